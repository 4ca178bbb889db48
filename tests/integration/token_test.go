package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

// import tokens seen by the tests (for the leak check).
var tokensSeen [][]byte

// ageingProxy stands between the state machine and the wrap function.
// For the first `times` calls it moves the token record's
// ParametersValidTo to one minute from now before passing the call on, as
// if the wrap stage had been slow and the token had aged: the import
// stage must then refuse the token and the state machine fetch fresh
// parameters.
func ageingProxy(t *testing.T, times int32) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	target := st.Functions["WrapMaterialFunction"]
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) <= times {
			var s flow.State
			if err := json.Unmarshal(body, &s); err != nil || s.Progress == nil || s.Progress.Token == nil {
				http.Error(w, "proxy: not a state", http.StatusInternalServerError)
				return
			}
			rec, err := toks.Get(r.Context(), s.Key.ARN, s.Progress.Token.ID)
			if err == nil {
				tokensSeen = append(tokensSeen, rec.ImportToken)
				S.Secret(rec.ImportToken) // checked in every log when the suite ends
			}
			soon := time.Now().UTC().Add(time.Minute).Format(time.RFC3339Nano)
			_, err = db.UpdateItem(r.Context(), &dynamodb.UpdateItemInput{
				TableName: &st.Table,
				Key: map[string]ddbtypes.AttributeValue{
					"pk": &ddbtypes.AttributeValueMemberS{Value: records.PK(s.Key.ARN)},
					"sk": &ddbtypes.AttributeValueMemberS{Value: s.Progress.Token.ID},
				},
				UpdateExpression:          aws.String("SET parametersValidTo = :v"),
				ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":v": &ddbtypes.AttributeValueMemberS{Value: soon}},
			})
			if err != nil {
				http.Error(w, "proxy: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		resp, err := http.Post(target, "application/json", strings.NewReader(string(body)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestTokenTooCloseToExpiryIsRefreshed(t *testing.T) {
	arn := externalKey(t)
	secret := materialSecret(t, randomBytes(t, 32))
	proxy, calls := ageingProxy(t, 1)
	ex := execute(t, input{"keyId": arn, "secretId": secret, "validFor": "96h", "wrappingKeySpec": spec},
		stack.ExecuteOptions{Functions: map[string]string{"WrapMaterialFunction": proxy.URL}})
	s := mustSucceed(t, ex)
	if calls.Load() != 2 {
		t.Fatalf("wrap stage ran %d times, want 2 (wrap, refresh, wrap again)", calls.Load())
	}
	if !ranState(ex, "ImportKeyMaterial", "caught") {
		t.Errorf("ImportTokenExpiring was not caught: %+v", ex.States)
	}
	var sum flow.Summary // the output's token is the last import's
	raw := ex.Output
	var str string
	if json.Unmarshal(raw, &str) == nil { // the runner may give the output as a JSON string
		raw = []byte(str)
	}
	if err := json.Unmarshal(raw, &sum); err != nil || sum.Token == nil || sum.Token.Fetches != 2 || s.LastError == nil || s.LastError.Error != flow.ImportTokenExpiring {
		t.Fatalf("output: token %+v lastError %+v (%v)", sum.Token, s.LastError, err)
	}
	md := describe(t, arn)
	if md.KeyState != kmstypes.KeyStateEnabled || !md.ValidTo.Equal(*s.Request.ValidTo) {
		t.Fatalf("key: %s %v", md.KeyState, md.ValidTo)
	}
	// Both token records tell the story: the first abandoned as too close
	// to expiry, the second used.
	trs := tokenRecords(t, arn)
	if len(trs) != 2 {
		t.Fatalf("token records: %+v", trs)
	}
	if trs[0].Status != records.TokenExpired || !strings.Contains(trs[0].StatusReason, "below the required 10m0s") || len(trs[0].ImportToken) != 0 {
		t.Errorf("first token record: status %s reason %q", trs[0].Status, trs[0].StatusReason)
	}
	if trs[1].Status != records.TokenUsed || trs[1].ExecutionID != trs[0].ExecutionID {
		t.Errorf("second token record: %+v", trs[1])
	}
	irs := importRecords(t, arn)
	if len(irs) != 1 || irs[0].Outcome != records.ImportSucceeded || irs[0].TokenFetches != 2 || irs[0].TokenID != trs[1].SK {
		t.Fatalf("import records: %+v", irs)
	}
}

func TestTokenRefreshIsBounded(t *testing.T) {
	arn := externalKey(t)
	secret := materialSecret(t, randomBytes(t, 32))
	proxy, _ := ageingProxy(t, 100)
	ex := execute(t, input{"keyId": arn, "secretId": secret, "validFor": "96h", "wrappingKeySpec": spec},
		stack.ExecuteOptions{Functions: map[string]string{"WrapMaterialFunction": proxy.URL}})
	mustFail(t, ex, flow.TokenRefreshLimitExceeded)
	if md := describe(t, arn); md.KeyState != kmstypes.KeyStatePendingImport {
		t.Fatalf("key changed: %s", md.KeyState)
	}
	trs := tokenRecords(t, arn)
	if len(trs) != 3 {
		t.Fatalf("want 3 token records (MAX_TOKEN_FETCHES), got %d", len(trs))
	}
	for _, r := range trs {
		if r.Status != records.TokenExpired {
			t.Errorf("token %s is %s, want expired", r.SK, r.Status)
		}
	}
	irs := importRecords(t, arn)
	if len(irs) != 1 || irs[0].ErrorName != flow.TokenRefreshLimitExceeded || irs[0].Stage != "fetch-parameters" {
		t.Fatalf("import records: %+v", irs)
	}
	_ = context.Background()
}
