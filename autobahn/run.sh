#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against the echo example and
# compares the results with autobahn/expected-results.json; fails on any
# regression. `--update` rewrites the expected results from this run.
#
# Installs the suite (Python 2.7 code) into cached virtualenvs under
# target/autobahn/ on first use. Only 127.0.0.1 is contacted (besides PyPI
# for that install).
set -euo pipefail
cd "$(dirname "$0")/.."

update=
case "${1:-}" in
  "") ;;
  --update) update=--update ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

work=target/autobahn
python27=/root/.pyenv/versions/2.7.18/bin/python2.7
venv3=$work/venv3
venv27=$work/venv27
# The pins that install and run under Python 2.7 (see autobahn/README.md).
pins=(
  setuptools==44.0.0 txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0
  cryptography==3.3.2 Twisted==19.10.0 zope.interface==4.6.0 jinja2==2.11.3
  markupsafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0 service_identity==18.1.0
  unittest2==1.1.0 six==1.16.0 "autobahn[accelerate,twisted]==0.10.9"
  autobahntestsuite==25.10.1
)
stamp=$venv27/.wharf-pins
mkdir -p "$work"

started=$SECONDS

# ---- the suite, installed once per checkout (in the background, while
# the server builds) ----
install_suite() {
  if [[ ! -x $python27 ]]; then
    echo "error: Python 2.7 not found at $python27" >&2
    return 1
  fi
  rm -rf "$venv3" "$venv27"
  python3 -m venv "$venv3"
  "$venv3/bin/pip" install --quiet virtualenv==20.21.1
  "$venv3/bin/virtualenv" --quiet -p "$python27" "$venv27"
  PIP_NO_PYTHON_VERSION_WARNING=1 "$venv27/bin/pip" install --quiet --no-cache-dir "${pins[@]}"
  echo "${pins[*]}" >"$stamp"
}
install_pid=
install_log=$work/install.log
if [[ ! -x $venv27/bin/wstest || "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]]; then
  echo "== installing the Autobahn testsuite into $venv27 (log: $install_log)"
  install_suite >"$install_log" 2>&1 &
  install_pid=$!
fi

# ---- the server ----
# The bench profile (release, with line tables): optimized like a release
# build, and what `cargo bench` then reuses in CI instead of compiling
# every dependency a second time. Its output lands in target/release.
echo "== building the echo example (release, the bench profile)"
cargo build --quiet --profile bench -p wharf-examples --example echo

if [[ -n $install_pid ]]; then
  if ! wait "$install_pid"; then
    echo "error: installing the testsuite failed; its log:" >&2
    cat "$install_log" >&2
    exit 1
  fi
  echo "   testsuite installed ($((SECONDS - started)) s since the start)"
fi

server_bin=target/release/examples/echo

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
server_log=$work/server.log
"$server_bin" --addr "127.0.0.1:$port" >"$server_log" 2>&1 &
server_pid=$!
# Stops the server: SIGTERM (a graceful shutdown), SIGKILL after 5 s.
cleanup() {
  kill "$server_pid" 2>/dev/null || return 0
  for ((j = 0; j < 50; j++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

# Wait (at most 10 s) until the port accepts.
for ((i = 0; ; i++)); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: the echo server exited; its log:" >&2
    cat "$server_log" >&2
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    break
  fi
  if ((i >= 200)); then
    echo "error: the echo server did not accept on 127.0.0.1:$port within 10 s" >&2
    exit 1
  fi
  sleep 0.05
done

# ---- the suite ----
echo "== wstest -m fuzzingclient against ws://127.0.0.1:$port"
spec=$work/fuzzingclient.json
sed "s/127\.0\.0\.1:PORT/127.0.0.1:$port/" autobahn/fuzzingclient.json >"$spec"
rm -rf "$work/reports"
wstest_log=$work/wstest.log
suite_started=$SECONDS
# wstest exits 0 even when cases fail; compare.py reads its report. The
# timeout only guards against a hung run.
if ! timeout 600 "$venv27/bin/wstest" -m fuzzingclient -s "$spec" >"$wstest_log" 2>&1; then
  echo "error: wstest failed; the end of its log ($wstest_log):" >&2
  tail -n 30 "$wstest_log" >&2
  exit 1
fi
echo "   suite ran in $((SECONDS - suite_started)) s"
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "error: the echo server died during the run; the end of its log:" >&2
  tail -n 30 "$server_log" >&2
  exit 1
fi
cleanup
trap - EXIT

# ---- the verdict ----
python3 autobahn/compare.py ${update:+"$update"} "$work/reports/index.json" autobahn/expected-results.json
echo "== autobahn done in $((SECONDS - started)) s"
