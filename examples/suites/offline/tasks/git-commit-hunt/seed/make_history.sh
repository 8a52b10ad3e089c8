#!/bin/sh
# Builds the luffy repository with a fixed history (fixed names and dates, so commit hashes are stable).
set -e
mkdir luffy && cd luffy
git init -q -b main
commit() {  # commit NAME EMAIL DATE MESSAGE
    GIT_AUTHOR_NAME="$1" GIT_AUTHOR_EMAIL="$2" GIT_AUTHOR_DATE="$3" \
    GIT_COMMITTER_NAME="$1" GIT_COMMITTER_EMAIL="$2" GIT_COMMITTER_DATE="$3" \
    git -c commit.gpgsign=false -c core.autocrlf=false commit -q -m "$4"
}
cat > app.py <<'PY'
from config import settings


def serve(request):
    return settings["greeting"]
PY
cat > config.py <<'PY'
settings = {"greeting": "hello"}
PY
git add -A && commit "Alice Moreau" "alice.moreau@example.com" "2025-03-03T09:00:00+00:00" "Initial commit"
cat > cache.py <<'PY'
_store = {}


def cached(key, compute):
    if key not in _store:
        _store[key] = compute()
    return _store[key]
PY
git add -A && commit "Alice Moreau" "alice.moreau@example.com" "2025-03-05T14:20:00+00:00" "Add an in-memory cache"
cat > config.py <<'PY'
settings = {"greeting": "hello"}
remove_caching_layer = False  # experimental: bypass cache.py
PY
git add -A && commit "Patrick Cruz" "patrick.cruz@example.com" "2025-03-10T11:45:00+00:00" "Add a switch to bypass the cache"
cat > config.py <<'PY'
# Runtime settings.
remove_caching_layer = False  # experimental: bypass cache.py
settings = {"greeting": "hello"}
PY
git add -A && commit "Alice Moreau" "alice.moreau@example.com" "2025-03-12T08:30:00+00:00" "Tidy the settings module"
sed -i 's/remove_caching_layer = False/remove_caching_layer = True/' config.py
git add -A && commit "Bob Okafor" "bob.okafor@example.com" "2025-03-20T16:05:00+00:00" "Turn the cache off in production"
