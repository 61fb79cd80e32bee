"""In-page accessibility checks for the browser tests: headings, labels, names, contrast, phone width.

They are deliberately simple (no axe-core download: the test machines are offline) and cover what the issue
asks for: labels, headings, contrast, and pages readable on a phone.
"""

from __future__ import annotations

from typing import Any

# Returns a list of problems (empty when the page passes).
AUDIT_JS = r"""
() => {
  const problems = [];
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length) &&
                          getComputedStyle(el).visibility !== "hidden";
  if (!document.documentElement.lang) problems.push("<html> has no lang");
  const h1 = [...document.querySelectorAll("h1")].filter(visible);
  if (h1.length !== 1) problems.push(`expected one visible <h1>, found ${h1.length}`);
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden" || !visible(el)) continue;
    const named = el.labels.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!named) problems.push(`unlabelled ${el.tagName.toLowerCase()} name=${el.name}`);
  }
  for (const el of document.querySelectorAll("a[href], button")) {
    if (!visible(el)) continue;
    const text = (el.innerText || "").trim() || el.getAttribute("aria-label");
    if (!text) problems.push(`unnamed ${el.tagName.toLowerCase()} ${el.outerHTML.slice(0, 80)}`);
  }
  for (const svg of document.querySelectorAll("svg[role=img]")) {
    const ids = (svg.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean);
    const text = ids.map((id) => (document.getElementById(id) || {}).textContent || "").join(" ").trim();
    if (!text) problems.push(`svg without an accessible name: ${svg.id}`);
  }
  // Contrast of every visible text run against its effective background (WCAG AA: 4.5, large text 3).
  const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || seen.has(el) || el.closest("svg, noscript, script, style")) continue;
    seen.add(el);
    if (!visible(el)) continue;
    const style = getComputedStyle(el);
    const fg = rgb(style.color), bg = background(el);
    const [a, b] = [lum(fg) + 0.05, lum(bg) + 0.05];
    const ratio = Math.max(a, b) / Math.min(a, b);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) {
      problems.push(`contrast ${ratio.toFixed(2)} < ${needed} for "${node.textContent.trim().slice(0, 40)}"`);
    }
  }
  return problems;
}
"""

OVERFLOW_JS = r"""
() => document.documentElement.scrollWidth - document.documentElement.clientWidth
"""


def audit(page: Any) -> list[str]:
    """Accessibility problems found on the current page (empty list when none)."""
    return list(page.evaluate(AUDIT_JS))


def horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than the viewport (0: nothing scrolls sideways)."""
    return int(page.evaluate(OVERFLOW_JS))
