(function () {
  // Tooltips: each chart mark's <title> (the no-JS fallback) becomes data-tip, shown at the pointer.
  var tip = document.createElement("div");
  tip.id = "tip"; tip.setAttribute("role", "tooltip"); document.body.appendChild(tip);
  document.querySelectorAll("svg[data-plot] title").forEach(function (t) {
    var el = t.parentNode;
    el.setAttribute("data-tip", t.textContent); el.classList.add("has-tip"); t.remove();
  });
  function place(e) {
    var el = e.target.closest ? e.target.closest("[data-tip]") : null;
    if (!el) { tip.style.display = "none"; return; }
    tip.textContent = el.getAttribute("data-tip"); tip.style.display = "block";
    var x = e.clientX + 14, y = e.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth - 4) x = Math.max(4, e.clientX - tip.offsetWidth - 14);
    if (y + tip.offsetHeight > window.innerHeight - 4) y = Math.max(4, e.clientY - tip.offsetHeight - 14);
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  document.querySelectorAll("svg[data-plot]").forEach(function (chart) {
    chart.addEventListener("mousemove", place);
    chart.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  });
  // Legend entries toggle their series.
  document.querySelectorAll("svg[data-plot] .legend-item").forEach(function (item) {
    function toggle() {
      var off = item.classList.toggle("off"), key = item.getAttribute("data-series");
      item.setAttribute("aria-pressed", off ? "false" : "true");
      item.closest("svg").querySelectorAll("[data-series]").forEach(function (g) {
        if (g !== item && !g.classList.contains("legend-item") && g.getAttribute("data-series") === key) {
          g.style.display = off ? "none" : "";
        }
      });
    }
    item.addEventListener("click", toggle);
    item.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); }
    });
  });
})();
