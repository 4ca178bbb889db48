package flow

import "testing"

// TestProgress: the token is referenced by the progress while its item is
// worked on, by the item once imported, and never by both.
func TestProgress(t *testing.T) {
	s := State{Plan: &Plan{Items: []PlanItem{{KeyARN: "a"}, {KeyARN: "b"}}}}
	s.Progress = s.Plan.Start()
	if !s.Progress.Pending || s.Current() != &s.Plan.Items[0] || s.LastToken() != nil {
		t.Fatalf("start: %+v", s.Progress)
	}
	s.Progress.Token = &TokenRef{ID: "t1", Fetches: 2}
	if s.LastToken().ID != "t1" || s.Plan.Items[0].TokenID != "" {
		t.Fatal("in flight: the token is the progress's only")
	}
	s.Advance()
	if it := s.Plan.Items[0]; it.TokenID != "t1" || it.Fetches != 2 || s.Progress.Token != nil || s.Progress.Item != 1 || !s.Progress.Pending {
		t.Fatalf("after the first import: item %+v, progress %+v", it, s.Progress)
	}
	if lt := s.LastToken(); lt == nil || lt.ID != "t1" || lt.Fetches != 2 {
		t.Fatalf("last token %+v", lt)
	}
	s.Progress.Token = &TokenRef{ID: "t2", Fetches: 1}
	s.Advance()
	if s.Progress.Pending || s.Current() != nil || s.LastToken().ID != "t2" {
		t.Fatalf("after the last import: %+v", s.Progress)
	}
	if err := (State{Execution: Execution{ID: "e"}, Request: &Request{}, Key: &Key{ARN: "a"}, Plan: s.Plan, Progress: s.Progress}).CheckToken(); NameOf(err) != InvalidInput {
		t.Fatalf("CheckToken past the last item: %v", err)
	}
}
