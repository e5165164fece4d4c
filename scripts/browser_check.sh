#!/usr/bin/env bash
# report.html in a real browser: the quickstart's and a convnet run's reports are opened in
# headless Chromium (Debian's package, installed here as root when missing); every figure must
# load and the page raise no error. The quickstart report's screenshot is refreshed as
# docs/report_quickstart.png.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "scripts/browser_check.sh: chromium is missing and this is not root; skipped" >&2
    exit 0
  fi
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cargo run --release --quiet -p hesslab-cli -- run pipelines/quickstart.toml --out "$OUT" >/dev/null
cargo run --release --quiet -p hesslab-cli -- run pipelines/convnet_quickstart.toml --out "$OUT" >/dev/null
browser() { chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars "$@" 2>/dev/null; }
for name in quickstart convnet_quickstart; do
  report="$OUT/$name/report.html"
  # A copy that counts, once the page has loaded, its images that did not decode and the
  # errors it raised, and says so in its title.
  python3 - "$report" "$OUT/$name/check.html" <<'PY'
import sys
page = open(sys.argv[1], encoding="utf-8").read()
probe = """<script>var errs=0;window.onerror=function(){errs++};var ce=console.error;console.error=function(){errs++;ce.apply(console,arguments)};
window.addEventListener('load',function(){var im=Array.from(document.images);var bad=im.filter(function(i){return !i.complete||i.naturalWidth===0}).length;
document.title='HESSLAB-CHECK images='+im.length+' broken='+bad+' errors='+errs;});</script>"""
assert "<head>" in page
open(sys.argv[2], "w", encoding="utf-8").write(page.replace("<head>", "<head>" + probe, 1))
PY
  title=$(browser --virtual-time-budget=10000 --dump-dom "file://$OUT/$name/check.html" | grep -o '<title>HESSLAB-CHECK[^<]*' | sed 's/<title>//' || true)
  echo "browser: $name report: ${title:-no title}"
  case "$title" in
    "HESSLAB-CHECK images=0 "*|"") echo "browser: the $name report showed no figure" >&2; exit 1 ;;
    *"broken=0 errors=0") ;;
    *) echo "browser: the $name report has broken figures or errors: $title" >&2; exit 1 ;;
  esac
done
browser --window-size=1000,900 --screenshot="$PWD/docs/report_quickstart.png" "file://$OUT/quickstart/report.html" >/dev/null
echo "browser: screenshot docs/report_quickstart.png"
