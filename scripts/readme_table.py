"""Replace the README's artifact table (between its markers) with `hesslab artifacts`."""
import pathlib
import subprocess

readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
table = subprocess.run(["cargo", "run", "--release", "-q", "-p", "hesslab-cli", "--", "artifacts"], check=True, capture_output=True, text=True).stdout
begin = text.index("<!-- artifact-table:begin")
body = text.index("\n", begin) + 1
end = text.index("<!-- artifact-table:end -->")
readme.write_text(text[:body] + table.rstrip("\n") + "\n" + text[end:])
