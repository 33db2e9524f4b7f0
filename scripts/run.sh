#!/usr/bin/env bash
# `make run`: services, migrations, one arq worker per queue, the web app, and a small demo load.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
[ -f .env ] && set -a && . ./.env && set +a
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/millrace}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export PORT="${WEB_PORT:-8000}"
# a webhook secret for the demo's signed payment events; set your provider's in .env
export WEBHOOK_SECRETS="${WEBHOOK_SECRETS:-{\"stripe\": [\"whsec_demo_only\"]\}}"

# the dashboard, the metrics and the API docs ask for the operator's password: a fresh one each run, unless .env sets a hash
if [ -z "${OPERATOR_PASSWORD_HASH:-}" ]; then
  # one interpreter makes both, so the password never sits in a command line that `ps` shows
  read -r OPERATOR_PASSWORD OPERATOR_PASSWORD_HASH < <("$BIN/python" -c \
    'import argon2, secrets; p = secrets.token_urlsafe(12); print(p, argon2.PasswordHasher().hash(p))')
  export OPERATOR_PASSWORD_HASH
fi

# download links (exports, error reports, documents) are signed with this secret, shared by the web app and
# the workers: a fresh one each run unless .env sets one, so a link from an earlier run stops working
if [ -z "${DOWNLOAD_LINK_SECRET:-}" ]; then
  DOWNLOAD_LINK_SECRET="$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
  export DOWNLOAD_LINK_SECRET
fi
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}"
# development: the dashboard's cookie travels over plain HTTP on this machine; production sets its own
export ENVIRONMENT="${ENVIRONMENT:-development}"

"$BIN/python" scripts/services.py --database-url "$DATABASE_URL" --redis-url "$REDIS_URL" --create-database
"$BIN/millrace" migrate

echo "Millrace: dashboard on http://127.0.0.1:$PORT/admin/ (user operator, password" \
  "${OPERATOR_PASSWORD:-the one your OPERATOR_PASSWORD_HASH is of}); metrics on /metrics, API docs on /docs" \
  "(same login); demo emails land in ${EML_DIR:-var/outbox-mail}/"
# the demo load signs up a few users through the web app once it answers; Ctrl-C stops everything
"$BIN/python" -m scripts.demo_load --count "${DEMO_USERS:-10}" --interval 1 &
demo=$!
trap 'kill $demo 2>/dev/null || true' EXIT
# `release:` has run above; honcho runs the long-lived processes of the same Procfile production uses
PATH="$PWD/$BIN:$PATH" "$BIN/honcho" start web $(grep -oP '^[a-z_]+(?=:)' Procfile | grep -vE '^(web|release)$')
