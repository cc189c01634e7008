"""Snakemake's HTML report as a reader sees it, in headless Chromium: the Results are opened by clicking through
the report's menu, each table's view button is clicked, and what the page then shows is read back.

The report is a React app that shows an HTML result in an iframe of a data URI, which `--dump-dom` does not
include; the script appended to a copy of the report clicks as a reader would and copies what each iframe
shows (fetched from its src) into the page, where `--dump-dom` prints it. A result whose view button is a
download link (a CSV) is recorded as such."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
SHOWN_ID = "moebert-shown"

# Clicks by visible text; waits are on Chromium's virtual clock (--virtual-time-budget).
CLICK_THROUGH = """
<script>
(() => {
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const byText = (text) => [...document.querySelectorAll("a, li, td, span, div")]
    .filter((el) => el.textContent.trim() === text)
    .pop();
  const record = (title, kind, text) => {
    const shown = document.createElement("div");
    shown.className = "__SHOWN__";
    shown.style.display = "none";
    shown.dataset.title = title;
    shown.dataset.kind = kind;
    shown.textContent = text;
    document.body.appendChild(shown);
  };
  const open = async (subcategory) => {
    byText("Results").click();
    await sleep(500);
    if (byText(subcategory)) byText(subcategory).click();
    await sleep(500);
  };
  window.addEventListener("load", async () => { try {
    await sleep(500);
    for (const [subcategory, title] of __RESULTS__) {
      await open(subcategory);
      const cell = byText(title);
      if (!cell) { record(title, "missing", ""); continue; }
      const [view, info] = cell.closest("tr").querySelectorAll("td:last-child a");
      if (view.getAttribute("href") === "#") {
        view.click();
        await sleep(500);
        const frame = document.querySelector("iframe");
        const image = document.querySelector("img[src^='data:image/png']");
        if (frame) record(title, "shown", await (await fetch(frame.src)).text());
        else record(title, "image", image ? image.src.slice(0, 40) : "");
      } else {
        record(title, "link", view.getAttribute("href").slice(0, 40));
      }
      info.click();
      await sleep(500);
      record(title, "caption", document.querySelector("#app").textContent);
      // Back to the menu, where the next result starts.
      app.setView({ navbarMode: "menu" });
      await sleep(500);
    }
  } catch (error) { record("error", "error", String(error)); } });
})();
</script>
"""


def chromium() -> str | None:
    return next((path for name in CHROMIUM if (path := shutil.which(name))), None)


def _with_script(report: Path, copy: Path, results: list[tuple[str, str]]) -> Path:
    script = CLICK_THROUGH.replace("__SHOWN__", SHOWN_ID).replace("__RESULTS__", json.dumps(results))
    page = report.read_text()
    head, tag, tail = page.rpartition("</body>")  # the page's own: its scripts hold the string too
    copy.write_text(head + script + tag + tail if tag else page + script)
    return copy


def shown_results(report: Path, results: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """What the report shows of each (subcategory, title) of `results`, clicked through as a reader does:
    {(title, kind): content}, kind "shown" (the HTML page the report displays), "image" (a plot, the start of
    its data URI), "link" (a download link instead), "missing" (no such result) or "caption" (the text of the
    result's information panel, its caption among it); ("error", "error") when the script failed."""
    copy = _with_script(report, report.with_name(report.stem + ".clicked.html"), results)
    dom = subprocess.run(
        [*_browser(), "--dump-dom", copy.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    found = re.findall(
        rf'<div class="{SHOWN_ID}" data-title="([^"]*)" data-kind="(\w+)"[^>]*>(.*?)</div>', dom, re.DOTALL
    )
    return {(html.unescape(title), kind): html.unescape(text) for title, kind, text in found}


def first_page(report: Path) -> str:
    """The DOM of the report as it opens."""
    return subprocess.run(
        [*_browser(), "--dump-dom", report.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout


def cells(page: str) -> list[str]:
    """The text of every table cell (th and td) of an HTML page."""
    found = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", page, re.DOTALL)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]


def _browser() -> list[str]:
    # Virtual time: the script's waits pass at once, and the page is read when all of them are done.
    return [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=60000"]


def screenshot(
    report: Path, output: Path, results: list[tuple[str, str]] = (), size: str = "1600,1000"
) -> Path:
    """A PNG of the report once the last of `results` is shown (the first page without results)."""
    copy = _with_script(report, report.with_name(report.stem + ".shot.html"), list(results))
    if results:  # stay on the last result's page
        copy.write_text(copy.read_text().replace('app.setView({ navbarMode: "menu" });', ""))
    subprocess.run(
        [
            *_browser(),
            f"--window-size={size}",
            "--hide-scrollbars",
            f"--screenshot={output}",
            copy.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    return output
