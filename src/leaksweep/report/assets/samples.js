(function () {
  var source = document.getElementById("samples-data");
  if (!source) return;
  var data = JSON.parse(source.textContent), rows = data.rows, prompts = data.prompts;
  var PAGE = __PAGE_ROWS__, page = 0, matching = rows;
  var $ = function (id) { return document.getElementById(id); };
  var body = $("samples-table").tBodies[0];
  function haystack(r) {
    return [r[0], r[1], r[2], prompts[r[3]] || "", r[6], r[7]].join(" ").toLowerCase();
  }
  var texts = rows.map(haystack);
  function cell(tr, text, cls) {
    var td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td);
  }
  function draw() {
    body.textContent = "";
    var first = page * PAGE, slice = matching.slice(first, first + PAGE);
    slice.forEach(function (r) {
      var tr = document.createElement("tr");
      cell(tr, r[0]); cell(tr, r[1]); cell(tr, r[2]); cell(tr, prompts[r[3]] || "", "text");
      cell(tr, r[7], "text"); cell(tr, r[5], typeof r[5] === "number" && r[5] > 0 ? "pos" : "");
      cell(tr, r[6]);
      body.appendChild(tr);
    });
    $("samples-count").textContent = matching.length + " of " + rows.length + " embedded generations match" +
      (matching.length ? "; showing " + (first + 1) + "-" + (first + slice.length) : "") + ".";
    $("samples-prev").disabled = page === 0;
    $("samples-next").disabled = first + PAGE >= matching.length;
  }
  function filter() {
    var q = $("samples-filter").value.trim().toLowerCase(), trait = $("samples-trait").value;
    var verdict = $("samples-verdict").value, cond = $("samples-condition").value;
    matching = rows.filter(function (r, i) {
      if (trait && r[2] !== trait) return false;
      if (cond && r[1] !== cond) return false;
      if (verdict === "pos" && !(typeof r[5] === "number" && r[5] > 0)) return false;
      if (verdict === "zero" && r[5] !== 0) return false;
      return !q || texts[i].indexOf(q) !== -1;
    });
    page = 0; draw();
  }
  $("samples-filter").addEventListener("input", filter);
  ["samples-trait", "samples-verdict", "samples-condition"].forEach(function (id) {
    $(id).addEventListener("change", filter);
  });
  $("samples-prev").addEventListener("click", function () { page = Math.max(0, page - 1); draw(); });
  $("samples-next").addEventListener("click", function () { page += 1; draw(); });
  draw();
})();
