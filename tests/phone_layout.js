// What a phone (390 x 844) must offer on the visible tab (issue "Right on every screen", item 3); read by
// tests/browser.py. Returns what falls short: text under 14 px, tap targets under 44 x 44 px, charts whose title,
// key or legend is cut or covers the plot or the x axis's labels, a map taller than wide, tables that scroll without
// saying so.
() => {
  const panel = Array.from(document.querySelectorAll('[role=tabpanel]')).find(p => p.offsetParent !== null);
  const shown = el => el.offsetParent !== null && el.getClientRects().length > 0 &&
      getComputedStyle(el).visibility !== 'hidden';
  const name = el => (el.id ? '#' + el.id : el.tagName.toLowerCase() + '.' + String(el.className).split(' ')[0])
      + ': ' + (el.innerText || el.getAttribute('aria-label') || '').trim().slice(0, 40);
  const scope = [...document.querySelectorAll('#header *, .tab-container *'), ...(panel ? panel.querySelectorAll('*') : [])];
  const small_text = [], small_targets = [];
  for (const el of scope) {
    if (!shown(el) || el.closest('.js-plotly-plot')) continue;
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    if (own && parseFloat(getComputedStyle(el).fontSize) < 13.5) small_text.push(name(el) + ' ' + getComputedStyle(el).fontSize);
    if (el.matches('button, [role=tab], a[href], input[type=checkbox], input[type=radio]')) {
      const t = el.matches('input') ? (el.closest('label') || el) : el, r = t.getBoundingClientRect();
      if (r.width > 0 && (r.width < 43.5 || r.height < 43.5)) small_targets.push(name(t) + ` ${Math.round(r.width)}x${Math.round(r.height)}`);
    }
  }
  const charts = [];
  for (const div of (panel ? panel.querySelectorAll('.js-plotly-plot') : [])) {
    if (!shown(div)) continue;
    const box = div.getBoundingClientRect(), fl = div._fullLayout, problems = [];
    const inside = (el, what) => { if (!el) return; const r = el.getBoundingClientRect();
      if (r.width > 0 && (r.left < box.left - 1 || r.right > box.right + 1)) problems.push(what + ' cut'); };
    inside(div.querySelector('.gtitle'), 'title');
    for (const t of div.querySelectorAll('.g-xtitle, .g-ytitle')) inside(t, 'axis title');
    for (const c of div.querySelectorAll('.colorbar')) {
      inside(c, 'colour key');
      const r = c.getBoundingClientRect(), vw = document.documentElement.clientWidth;
      const scroller = div.closest('#confusion-plot');
      const left = scroller ? scroller.getBoundingClientRect().left : 0, right = scroller ? left + scroller.clientWidth : vw;
      if (r.width > 0 && (r.left < left - 1 || r.right > right + 1)) problems.push('colour key off screen');
      if (r.width < 40) problems.push('colour key ' + Math.round(r.width) + ' px');
    }
    const legend = div.querySelector('.legend'), plot = div.querySelector('.nsewdrag');
    inside(legend, 'legend');
    const over = (a, b) => a.width > 0 &&  // a drawn box `a` that shares more than a pixel's edge with `b`
      !(a.bottom <= b.top + 1 || a.top >= b.bottom - 1 || a.right <= b.left + 1 || a.left >= b.right - 1);
    if (legend && plot && over(legend.getBoundingClientRect(), plot.getBoundingClientRect()))
      problems.push('legend over the plot');
    if (legend && Array.from(div.querySelectorAll('.xtick text, [class*="xtitle"]')).map(el => el.getBoundingClientRect())
        .some(r => r.height > 0 && over(legend.getBoundingClientRect(), r)))
      problems.push('legend over the x axis\'s labels or title');
    if (div.classList.contains('map-plot') && fl._size.w < fl._size.h) problems.push(`map ${fl._size.w}x${fl._size.h}`);
    charts.push({chart: name(div.closest('[id]') || div), problems});
  }
  const keys = Array.from(document.querySelectorAll('.heat-key .bar')).filter(shown).map(b => b.getBoundingClientRect().width);
  const tables = Array.from(panel ? panel.querySelectorAll('.table-container') : []).filter(shown).map(t => {
    const wrap = t.querySelector('.table-wrap') || t, scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
    const col = t.closest('.column') || panel, hint = Array.from(col.querySelectorAll('.scroll-hint')).some(shown);
    return {table: name(t.closest('[id]') || t), scrolls, hint};
  });
  const header = document.querySelector('#header').getBoundingClientRect();
  return {small_text: small_text.slice(0, 20), small_targets: small_targets.slice(0, 20), charts, keys, tables,
          header_height: header.height, menu: Array.from(document.querySelectorAll('.overflow-menu')).some(shown)};
}
