// Live progress of a search: one line per model as it finishes, from server-sent
// events; the page reloads itself once the ranking is there. Without this script the
// page refreshes every two seconds instead (see job.html).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) {
    return;
  }
  var list = document.getElementById("progress");
  var status = document.getElementById("status");
  var source = new EventSource(live.getAttribute("data-events"));

  // every connection replays the progress from the start
  source.addEventListener("open", function () {
    list.textContent = "";
  });
  source.addEventListener("queue", function (e) {
    var ahead = JSON.parse(e.data).position;
    status.textContent = ahead > 0
      ? "Waiting: " + ahead + " search" + (ahead === 1 ? "" : "es") + " ahead of this one."
      : "Starting…";
  });
  source.addEventListener("running", function () {
    status.textContent = "Ranking the zoo: one line per model as it finishes.";
  });
  source.addEventListener("progress", function (e) {
    var row = JSON.parse(e.data);
    var item = document.createElement("li");
    item.textContent = row.line;
    item.className = row.status !== "ok" ? "skipped" : (row.cached ? "cached" : "ran");
    list.appendChild(item);
  });
  source.addEventListener("settled", function () {
    source.close();
    window.location.reload();
  });
})();
