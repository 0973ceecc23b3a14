// Tally dashboard: plain JavaScript, no build step, no library. Reads area aggregates from the
// API (or, in a published site, the JSON snapshots under data/), never every station.
(function () {
  "use strict";

  var I18N = window.TALLY_I18N;
  var LIVE = !!document.querySelector('meta[name="tally-mode"][content="live"]');
  var params = new URLSearchParams(location.search);
  var lang = params.get("lang") || "en";
  if (!I18N[lang]) lang = "en";
  var SAFE = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000"];

  var state = {
    election: null, geo: null, geoTried: false, results: null, progress: null,
    stations: null, stationLimit: 100, projection: null, reconciliation: null,
    round: 1, area: "", mapMode: "leader", lastUpdate: null, live: false,
    safe: localStorage.getItem("tally.safe") === "1",
  };

  // ---- text and numbers ----
  function t(key, vars) {
    var s = I18N[lang][key];
    if (s === undefined) s = I18N.en[key];
    if (s === undefined) s = key;
    if (vars) Object.keys(vars).forEach(function (k) { s = s.split("{" + k + "}").join(vars[k]); });
    return s;
  }
  var locale = I18N[lang].locale;
  var intFmt = new Intl.NumberFormat(locale);
  var pctFmt = new Intl.NumberFormat(locale, { style: "percent", minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var ptFmt = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function n(x) { return x === null || x === undefined ? "–" : intFmt.format(x); }
  function pct(x) { return x === null || x === undefined ? "–" : pctFmt.format(x / 100); }
  function pts(x) { return x === null || x === undefined ? "–" : ptFmt.format(x); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function levelName(l) { return (I18N[lang].levels || {})[l] || I18N.en.levels[l] || l; }
  function cap(s) { return s ? s.charAt(0).toLocaleUpperCase(locale) + s.slice(1) : s; }
  function roundName(r) {
    var rounds = state.election ? state.election.rounds : [];
    return r > 1 && r === rounds[rounds.length - 1].round ? t("runoff") : t("round", { n: r });
  }

  // ---- where the data comes from ----
  function areaKey(path) {
    if (!path) return "_";
    var out = "";
    new TextEncoder().encode(path).forEach(function (b) {
      var c = String.fromCharCode(b);
      out += /[A-Za-z0-9-]/.test(c) ? c : "_" + b.toString(16).toUpperCase().padStart(2, "0");
    });
    return out;
  }
  var enc = encodeURIComponent;
  var url = {
    election: function () { return LIVE ? "api/v1/election" : "data/election.json"; },
    progress: function () { return LIVE ? "api/v1/progress" : "data/progress.json"; },
    geo: function () { return LIVE ? "api/v1/geo" : "data/geo.json"; },
    results: function (area, level) {
      return LIVE ? "api/v1/results?area=" + enc(area) + (level ? "&level=" + enc(level) : "")
        : "data/results/" + areaKey(area) + ".json";
    },
    stations: function (round, area, limit) {
      return LIVE ? "api/v1/stations?round=" + round + "&area=" + enc(area) + "&limit=" + limit
        : "data/stations/" + round + "/" + areaKey(area) + ".json";
    },
    projection: function (round) { return LIVE ? "api/v1/projection?round=" + round : null; },
    reconciliation: function (round) {
      return LIVE ? "api/v1/reconciliation?round=" + round : "data/reconciliation/" + round + ".json";
    },
  };
  function getJSON(u) {
    if (!u) return Promise.resolve(null);
    return fetch(u, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) { var e = new Error(u + ": HTTP " + r.status); e.status = r.status; throw e; }
      return r.json();
    });
  }
  function optional(u) { return getJSON(u).catch(function () { return null; }); }

  // ---- routes: /r/{round}/a/{area path} (a published site: #/r/...) ----
  function parseRoute() {
    var p = LIVE ? location.pathname : location.hash.replace(/^#/, "");
    var m = p.match(/\/r\/(\d+)(?:\/a\/(.*))?$/);
    state.round = m ? parseInt(m[1], 10) : 1;
    state.area = m && m[2] ? m[2].split("/").filter(Boolean).map(decodeURIComponent).join("/") : "";
  }
  function href(round, area) {
    var p = "r/" + round + (area ? "/a/" + area.split("/").map(enc).join("/") : "");
    return LIVE ? "/" + p + location.search : location.search + "#/" + p;
  }
  function go(round, area) {
    if (LIVE) history.pushState(null, "", href(round, area));
    else location.hash = "#/r/" + round + (area ? "/a/" + area.split("/").map(enc).join("/") : "");
    parseRoute();
    state.stationLimit = 100;
    refresh(true).then(function () {
      var h = document.getElementById("rounds-h");
      if (h) h.focus();
    });
  }

  // ---- colours ----
  function candidates(round) {
    var r = (state.election.rounds || []).filter(function (x) { return x.round === round; })[0];
    return r ? r.candidates : [];
  }
  function colourOf(id) {
    var all = [];
    state.election.rounds.forEach(function (r) {
      r.candidates.forEach(function (c) { if (all.indexOf(c.id) < 0) all.push(c.id); });
    });
    var i = all.indexOf(id);
    if (state.safe || i < 0) return SAFE[(i < 0 ? 0 : i) % SAFE.length];
    var c = null;
    state.election.rounds.forEach(function (r) {
      r.candidates.forEach(function (x) { if (x.id === id && x.colour) c = x.colour; });
    });
    return c || SAFE[i % SAFE.length];
  }
  function nameOf(id) {
    var name = id;
    (state.election ? state.election.rounds : []).forEach(function (r) {
      r.candidates.forEach(function (c) { if (c.id === id) name = c.name; });
    });
    return name;
  }
  function mix(hex, f) {
    var v = parseInt(hex.slice(1), 16);
    var ch = [(v >> 16) & 255, (v >> 8) & 255, v & 255].map(function (c) { return Math.round(255 + (c - 255) * f); });
    return "rgb(" + ch.join(",") + ")";
  }
  function seq(f) {
    // light to dark blue, readable in every kind of colour vision
    var a = [239, 243, 255], b = [8, 48, 107];
    f = Math.max(0, Math.min(1, f));
    return "rgb(" + a.map(function (x, i) { return Math.round(x + (b[i] - x) * f); }).join(",") + ")";
  }

  // ---- outcome in words ----
  function outcomeWords(rr) {
    var o = rr.outcome;
    var sum = rr.candidates.reduce(function (a, c) { return a + c.votes; }, 0);
    if (!sum) return t("noVotes");
    var p = pct(rr.progress.stations_pct);
    var lot = o.by_lot ? t("byLot") : "";
    if (o.kind === "elected") return t(o.final === false ? "electedNotFinal" : "elected", { name: nameOf(o.winner), pct: p }) + lot;
    if (o.kind === "runoff") {
      return t(o.final === false ? "toRunoffNotFinal" : "toRunoff", { a: nameOf(o.runoff[0]), b: nameOf(o.runoff[1]), pct: p }) + lot;
    }
    return t("undecided", { reason: o.reason || "" });
  }

  // ---- rendering ----
  function el(id) { return document.getElementById(id); }

  function renderRounds() {
    var rep = state.results;
    var html = "";
    rep.rounds.forEach(function (rr) {
      var shown = rr.round === state.round;
      var hook = shown ? "data-candidate" : "data-candidate-other";
      html += '<article class="round' + (shown ? " shown" : "") + '" aria-labelledby="round-h-' + rr.round + '">';
      html += '<h2 id="round-h-' + rr.round + '"' + (shown ? ' tabindex="-1" data-focus="rounds-h"' : "") + ">" + esc(roundName(rr.round)) + "</h2>";
      if (!shown) html += '<p class="small"><a href="' + esc(href(rr.round, state.area)) + '" data-go-round="' + rr.round + '">' + esc(t("showRound", { round: roundName(rr.round) })) + "</a></p>";
      html += "<p class=\"outcome\"" + (shown ? " data-outcome" : "") + ">" + esc(outcomeWords(rr)) + "</p>";
      html += '<table class="bars"><caption class="sr">' + esc(roundName(rr.round)) + '</caption><thead><tr><th scope="col">' + esc(t("candidate")) + '</th><th scope="col" class="num">' + esc(t("votes")) + '</th><th scope="col" class="num">' + esc(t("share")) + "</th></tr></thead><tbody>";
      rr.candidates.forEach(function (c) {
        var col = colourOf(c.id);
        html += "<tr " + hook + '="' + esc(c.id) + '" data-votes="' + c.votes + '" data-share="' + c.share + '">';
        html += '<th scope="row"><span class="sw" style="background:' + col + '"></span>' + esc(c.name) +
          '<span class="bar" aria-hidden="true"><span style="width:' + Math.min(100, c.share).toFixed(2) + "%;background:" + col + '"></span></span></th>';
        html += '<td class="num">' + n(c.votes) + '</td><td class="num">' + pct(c.share) + "</td></tr>";
      });
      html += "</tbody></table>";
      if (rr.margin) html += "<p>" + esc(t("lead", { name: nameOf(rr.margin.first), votes: n(rr.margin.votes), points: pts(rr.margin.points) })) + "</p>";
      html += "<p>" + esc(t("turnoutOf", { pct: pct(rr.totals.turnout), cast: n(rr.totals.cast), registered: n(rr.totals.registered) })) + "</p>";
      var pg = rr.progress;
      html += '<div class="progress"' + (shown ? ' data-progress data-stations-reported="' + pg.stations_counted + '" data-stations-total="' + pg.stations_known + '"' : "") + ">";
      html += '<div class="meter" aria-hidden="true"><span style="width:' + pg.stations_pct.toFixed(2) + '%"></span></div>';
      html += "<p>" + esc(t("progress", { counted: n(pg.stations_counted), known: n(pg.stations_known), pct: pct(pg.stations_pct), rcounted: n(pg.registered_counted), rknown: n(pg.registered_known) })) + "</p></div>";
      html += "</article>";
    });
    el("rounds").innerHTML = html;
  }

  function currentRound() {
    return state.results.rounds.filter(function (r) { return r.round === state.round; })[0] || state.results.rounds[0];
  }

  function areaLabel(a) {
    var name = a.area.split("/").pop();
    if (!a.leader) return t("areaLabelEmpty", { area: name });
    return t("areaLabel", { area: name, leader: nameOf(a.leader), points: pts(a.margin ? a.margin.points : 0), turnout: pct(a.totals.turnout), counted: pct(a.progress.stations_pct) });
  }

  function fillOf(a, range) {
    if (state.mapMode === "turnout") {
      if (a.totals.turnout === null) return "#d9d9d9";
      return seq((a.totals.turnout - range[0]) / Math.max(1e-9, range[1] - range[0]));
    }
    if (state.mapMode === "counted") return seq(a.progress.stations_pct / 100);
    if (!a.leader) return "#d9d9d9";
    var m = a.margin ? a.margin.points : 0;
    return mix(colourOf(a.leader), 0.35 + 0.65 * Math.min(1, m / 30));
  }

  function projectGeo(features, w) {
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    function each(coords, f) {
      if (typeof coords[0] === "number") f(coords); else coords.forEach(function (c) { each(c, f); });
    }
    features.forEach(function (ft) {
      each(ft.geometry.coordinates, function (p) {
        minX = Math.min(minX, p[0]); maxX = Math.max(maxX, p[0]); minY = Math.min(minY, p[1]); maxY = Math.max(maxY, p[1]);
      });
    });
    var k = Math.cos(((minY + maxY) / 2) * Math.PI / 180);
    var s = w / ((maxX - minX) * k);
    var h = (maxY - minY) * s;
    var paths = features.map(function (ft) {
      var d = "";
      var polys = ft.geometry.type === "Polygon" ? [ft.geometry.coordinates] : ft.geometry.coordinates;
      polys.forEach(function (poly) {
        poly.forEach(function (ring) {
          ring.forEach(function (p, i) {
            d += (i ? "L" : "M") + ((p[0] - minX) * k * s).toFixed(1) + " " + ((maxY - p[1]) * s).toFixed(1);
          });
          d += "Z";
        });
      });
      return { area: ft.properties.area, d: d };
    });
    return { paths: paths, w: w, h: h };
  }

  function renderMap() {
    var panel = el("map-panel");
    var rr = currentRound();
    var g = state.election.geo;
    var depth = state.area ? state.area.split("/").length : 0;
    var levels = roundLevels();
    if (!state.geo || !g || levels[depth] !== g.level || !rr.areas) { panel.hidden = true; panel.innerHTML = ""; return; }
    panel.hidden = false;
    var byArea = {};
    rr.areas.forEach(function (a) { byArea[a.area] = a; });
    var turnouts = rr.areas.map(function (a) { return a.totals.turnout; }).filter(function (x) { return x !== null; });
    var range = [Math.min.apply(null, turnouts.concat([100])), Math.max.apply(null, turnouts.concat([0]))];
    if (!state.projected) state.projected = projectGeo(state.geo.features, 1000);
    var P = state.projected;
    var html = '<h2 id="map-h">' + esc(t("mapTitle", { level: levelName(g.level) })) + "</h2>";
    html += '<fieldset class="modes"><legend>' + esc(t("mapColour")) + "</legend>";
    [["leader", "byLeader"], ["turnout", "byTurnout"], ["counted", "byCounted"]].forEach(function (m) {
      html += '<label><input type="radio" name="mapmode" value="' + m[0] + '"' + (state.mapMode === m[0] ? " checked" : "") + "> " + esc(t(m[1])) + "</label>";
    });
    html += "</fieldset>";
    html += '<p class="small muted" id="map-hint">' + esc(t("mapHint")) + "</p>";
    html += '<svg class="map" viewBox="0 0 ' + P.w + " " + P.h.toFixed(0) + '" role="group" aria-labelledby="map-h" aria-describedby="map-hint">';
    P.paths.forEach(function (p) {
      var a = byArea[p.area];
      var fill = a ? fillOf(a, range) : "#d9d9d9";
      var label = a ? areaLabel(a) : p.area;
      html += '<a href="' + esc(href(state.round, p.area)) + '" data-area="' + esc(p.area.split("/").pop()) + '" data-path="' + esc(p.area) + '" aria-label="' + esc(label) + '">' +
        '<path d="' + p.d + '" fill="' + fill + '"><title>' + esc(label) + "</title></path></a>";
    });
    html += "</svg>";
    html += '<div class="legend">';
    if (state.mapMode === "leader") {
      html += '<p class="small">' + esc(t("mapLegendLeader")) + "</p><ul>";
      rr.candidates.forEach(function (c) {
        var col = colourOf(c.id);
        html += '<li><span class="sw" style="background:' + col + '"></span><span class="sw" style="background:' + mix(col, 0.4) + '"></span>' + esc(c.name) + "</li>";
      });
      html += '<li><span class="sw" style="background:#d9d9d9"></span>' + esc(t("mapNoData")) + "</li></ul>";
    } else {
      var lo = state.mapMode === "turnout" ? range[0] : 0, hi = state.mapMode === "turnout" ? range[1] : 100;
      html += '<p class="small"><span>' + pct(lo) + '</span> <span class="ramp" aria-hidden="true"></span> <span>' + pct(hi) + "</span></p>";
    }
    html += "</div>";
    if (g.unmatched_areas && g.unmatched_areas.length) html += '<p class="small muted">' + esc(t("mapUnmatched", { areas: g.unmatched_areas.join(", ") })) + "</p>";
    panel.innerHTML = html;
  }

  function roundLevels() {
    var r = state.election.rounds.filter(function (x) { return x.round === state.round; })[0] || state.election.rounds[0];
    return r.levels;
  }

  function renderChildren() {
    var panel = el("children");
    var rr = currentRound();
    if (!rr.areas || !rr.areas.length) { panel.hidden = true; panel.innerHTML = ""; return; }
    panel.hidden = false;
    var level = rr.areas[0].level;
    var html = '<h2 id="children-h">' + esc(cap(t("childrenTitle", { level: levelName(level) }))) + "</h2>";
    html += '<div class="scroll"><table class="areas"><thead><tr><th scope="col">' + esc(t("area")) + '</th><th scope="col">' + esc(t("leader")) +
      '</th><th scope="col" class="num">' + esc(t("margin")) + '</th><th scope="col" class="num">' + esc(t("turnout")) + '</th><th scope="col" class="num">' + esc(t("counted")) + "</th></tr></thead><tbody>";
    rr.areas.forEach(function (a) {
      var name = a.area.split("/").pop();
      html += '<tr data-child="' + esc(name) + '"><th scope="row"><a href="' + esc(href(state.round, a.area)) + '" data-path="' + esc(a.area) + '">' + esc(name) + "</a></th>";
      html += "<td>" + (a.leader ? '<span class="sw" style="background:' + colourOf(a.leader) + '"></span>' + esc(nameOf(a.leader)) : esc(t("mapNoData"))) + "</td>";
      html += '<td class="num">' + pts(a.margin ? a.margin.points : null) + '</td><td class="num">' + pct(a.totals.turnout) + '</td><td class="num" data-stations-reported="' + a.progress.stations_counted + '" data-stations-total="' + a.progress.stations_known + '">' + pct(a.progress.stations_pct) + "</td></tr>";
    });
    html += "</tbody></table></div>";
    panel.innerHTML = html;
  }

  function renderStations() {
    var panel = el("stations");
    var page = state.stations;
    if (!page) { panel.hidden = true; panel.innerHTML = ""; return; }
    panel.hidden = false;
    var cands = candidates(state.round);
    var html = '<h2 id="stations-h">' + esc(t("stationsTitle")) + "</h2>";
    html += '<div class="scroll"><table class="stations"><thead><tr><th scope="col">' + esc(t("station")) + '</th><th scope="col">' + esc(t("source")) + '</th><th scope="col" class="num">' + esc(t("version")) +
      '</th><th scope="col" class="num">' + esc(t("registered")) + '</th><th scope="col" class="num">' + esc(t("cast")) + '</th><th scope="col" class="num">' + esc(t("invalid")) + '</th><th scope="col" class="num">' + esc(t("valid")) + "</th>";
    cands.forEach(function (c) { html += '<th scope="col" class="num">' + esc(c.name) + "</th>"; });
    html += '<th scope="col">' + esc(t("findings")) + "</th></tr></thead><tbody>";
    page.stations.forEach(function (s) {
      var sheets = s.sheets.length ? s.sheets : [null];
      sheets.forEach(function (sh, i) {
        html += '<tr data-station="' + esc(s.station_id) + '"' + (s.conflict ? ' class="conflict"' : "") + ">";
        if (i === 0) html += '<th scope="row" rowspan="' + sheets.length + '">' + esc(s.station_id) + '<br><span class="small muted">' + esc(s.area) + "</span>" + (s.conflict ? '<br><strong class="small">' + esc(t("conflict")) + "</strong>" : "") + "</th>";
        if (!sh) { html += '<td colspan="' + (6 + cands.length) + '" class="muted">' + esc(t("notYet")) + "</td></tr>"; return; }
        html += "<td>" + esc(sh.source) + '</td><td class="num">' + sh.version + '</td><td class="num">' + n(sh.registered) + '</td><td class="num">' + n(sh.cast) + '</td><td class="num">' + n(sh.invalid) + '</td><td class="num">' + n(sh.valid) + "</td>";
        cands.forEach(function (c) { html += '<td class="num">' + n(sh.votes[c.id]) + "</td>"; });
        html += "<td>" + (sh.warnings.length ? esc(sh.warnings.join(", ")) : esc(t("none"))) + "</td></tr>";
      });
    });
    html += "</tbody></table></div>";
    var to = page.offset + page.stations.length;
    html += '<p class="small">' + esc(t("showing", { from: n(page.total ? page.offset + 1 : 0), to: n(to), total: n(page.total) })) + "</p>";
    if (LIVE && to < page.total && state.stationLimit < 500) html += '<button type="button" id="more-stations">' + esc(t("more")) + "</button>";
    panel.innerHTML = html;
  }

  function renderProjection() {
    var panel = el("projection");
    var p = state.projection;
    if (!p || !p.candidates) { panel.hidden = true; panel.innerHTML = ""; return; }
    panel.hidden = false;
    var html = '<h2 id="projection-h">' + esc(t("projectionTitle")) + "</h2>";
    if (p.call) html += '<p class="outcome" data-projection-call="' + esc(p.call.kind) + '">' + esc(p.call.words) + "</p>";
    if (p.reported) html += '<p class="small">' + esc(t("projReported", { stations: n(p.reported.stations), total: n(p.reported.stations_total), share: pct(p.reported.registered_share) })) + "</p>";
    html += '<ul class="bands">';
    p.candidates.forEach(function (c) {
      var col = colourOf(c.id);
      html += '<li data-projection-candidate="' + esc(c.id) + '" data-share="' + c.share + '" data-lower="' + c.lower + '" data-upper="' + c.upper + '">';
      html += '<span class="band" aria-hidden="true"><span class="range" style="left:' + c.lower + "%;width:" + Math.max(0.3, c.upper - c.lower) + "%;background:" + mix(col, 0.45) + '"></span><span class="point" style="left:' + c.share + "%;background:" + col + '"></span><span class="half"></span></span>';
      html += esc(t("projBand", { name: c.name || nameOf(c.id), share: pct(c.share), lower: pct(c.lower), upper: pct(c.upper), now: pct(c.share_now) })) + "</li>";
    });
    html += "</ul>";
    if (p.turnout) html += "<p>" + esc(t("projTurnout", { share: pct(p.turnout.share), lower: pct(p.turnout.lower), upper: pct(p.turnout.upper) })) + "</p>";
    html += '<p class="small muted">' + esc(t("projMethod", { method: p.method || "", confidence: pct((p.confidence || 0) * 100) })) + "</p>";
    panel.innerHTML = html;
  }

  function renderReconciliation() {
    var panel = el("reconciliation");
    var r = state.reconciliation;
    if (!r || !r.stations) { panel.hidden = true; panel.innerHTML = ""; return; }
    panel.hidden = false;
    var s = r.stations;
    var html = '<h2 id="recon-h">' + esc(t("reconTitle")) + "</h2>";
    if (r.sentence) html += "<p>" + esc(r.sentence) + "</p>";
    html += "<p>" + esc(t("reconStations", { compared: n(s.compared), agree: n(s.agree), differ: n(s.differ), only: n(s.only_official) })) + "</p>";
    if (r.worst_case) html += "<p>" + esc(t("reconFlip", { answer: t(r.worst_case.could_flip ? "yes" : "no") })) + (r.worst_case.scenario ? " " + esc(r.worst_case.scenario) : "") + "</p>";
    panel.innerHTML = html;
  }

  function renderJournal() {
    var p = state.progress;
    var panel = el("journal");
    if (!p) { panel.innerHTML = ""; return; }
    var cmd = "tally verify EXPORT_DIR --anchor " + p.journal_seq + ":" + p.journal_head;
    var html = '<h2 id="journal-h">' + esc(t("journalTitle")) + "</h2>";
    html += '<p data-journal-seq="' + p.journal_seq + '" data-journal-head="' + esc(p.journal_head) + '">' + esc(t("journalHead", { seq: n(p.journal_seq), hash: p.journal_head.slice(0, 16) + "…" })) + "</p>";
    html += '<p class="small">' + esc(t("verifyHow", { cmd: "\u0001" })).replace("\u0001", "<code>" + esc(cmd) + "</code>") + "</p>";
    var time = state.lastUpdate ? new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "medium" }).format(state.lastUpdate) : "–";
    html += '<p class="small" data-last-update>' + esc(LIVE ? t("lastUpdate", { time: time }) : t("snapshotAt", { seq: n(p.journal_seq) })) + "</p>";
    panel.innerHTML = html;
  }

  function renderCrumbs() {
    var parts = state.area ? state.area.split("/") : [];
    var html = '<ol><li><a href="' + esc(href(state.round, "")) + '" data-path=""' + (parts.length ? "" : ' aria-current="page"') + ">" + esc(t("whole")) + "</a></li>";
    parts.forEach(function (p, i) {
      var path = parts.slice(0, i + 1).join("/");
      html += '<li><a href="' + esc(href(state.round, path)) + '" data-path="' + esc(path) + '"' + (i === parts.length - 1 ? ' aria-current="page"' : "") + ">" + esc(p) + "</a></li>";
    });
    el("crumbs").innerHTML = html + "</ol>";
    el("crumbs").setAttribute("aria-label", t("crumbs"));
  }

  function renderStatus() {
    el("status").textContent = LIVE ? (state.live ? t("live") : t("reconnecting")) : t("staticMode");
  }

  function render() {
    // Keep the keyboard where it was across live re-renders.
    var a = document.activeElement;
    var keep = a && a.getAttribute ? (a.getAttribute("data-path") !== null ? '[data-path="' + CSS.escape(a.getAttribute("data-path")) + '"]' : a.id ? "#" + CSS.escape(a.id) : null) : null;
    var keepIn = a && a.closest ? (a.closest("section") || {}).id : null;
    document.title = state.election.election + (state.area ? " — " + state.area : "");
    el("election").textContent = state.election.election;
    renderCrumbs();
    renderRounds();
    renderProjection();
    renderMap();
    renderChildren();
    renderStations();
    renderReconciliation();
    renderJournal();
    renderStatus();
    if (keep) {
      var again = keepIn ? document.querySelector("#" + keepIn + " " + keep) : document.querySelector(keep);
      if (again && again !== document.activeElement) again.focus();
    }
    document.body.setAttribute("data-ready", state.progress ? String(state.progress.journal_seq) : "0");
    if (!window.tallyFirstRender) window.tallyFirstRender = performance.now();
  }

  // ---- loading ----
  var inflight = null, again = false;
  function refresh(full) {
    if (inflight) { again = true; return inflight; }
    var levels = roundLevels();
    var depth = state.area ? state.area.split("/").length : 0;
    var child = levels[depth] || null;
    var atBottom = depth >= levels.length - 1;
    var jobs = [
      getJSON(url.results(state.area, child)),
      getJSON(url.progress()),
      LIVE ? optional(url.projection(state.round)) : Promise.resolve(null),
      atBottom ? optional(url.stations(state.round, state.area, state.stationLimit)) : Promise.resolve(null),
    ];
    inflight = Promise.all(jobs).then(function (r) {
      state.results = r[0]; state.progress = r[1]; state.projection = r[2]; state.stations = r[3];
      state.lastUpdate = new Date();
      var obs = state.progress && state.progress.observer_sheets > 0;
      return (obs ? optional(url.reconciliation(state.round)) : Promise.resolve(null)).then(function (rec) {
        state.reconciliation = rec;
        render();
      });
    }).catch(function (e) {
      el("status").textContent = t("loadError", { error: e.message });
    }).then(function () {
      inflight = null;
      if (again) { again = false; return refresh(); }
    });
    return inflight;
  }

  var timer = null;
  function soon() {
    // Debounced: one refetch for a burst of commits, at most 300 ms after the first.
    if (timer) return;
    timer = setTimeout(function () { timer = null; refresh(); }, 300);
  }

  function listen() {
    if (!LIVE || !window.EventSource) return;
    // EventSource reconnects by itself and sends Last-Event-ID: the server replays what was missed.
    var es = new EventSource("api/v1/events");
    es.onopen = function () { state.live = true; renderStatus(); soon(); };
    es.onerror = function () { state.live = false; renderStatus(); };
    es.addEventListener("change", soon);
    es.addEventListener("projection", soon);
    es.addEventListener("conflict", soon);
  }

  // ---- events ----
  document.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest("a[data-path], a[data-go-round]") : null;
    if (a && !e.ctrlKey && !e.metaKey && !e.shiftKey) {
      e.preventDefault();
      if (a.hasAttribute("data-go-round")) go(parseInt(a.getAttribute("data-go-round"), 10), state.area);
      else go(state.round, a.getAttribute("data-path"));
      return;
    }
    if (e.target.id === "more-stations") { state.stationLimit = 500; refresh(); }
  });
  document.addEventListener("change", function (e) {
    if (e.target.name === "mapmode") { state.mapMode = e.target.value; renderMap(); var r = document.querySelector('input[name="mapmode"][value="' + state.mapMode + '"]'); if (r) r.focus(); }
    if (e.target.id === "safe-palette") { state.safe = e.target.checked; localStorage.setItem("tally.safe", state.safe ? "1" : "0"); render(); }
    if (e.target.id === "lang") { params.set("lang", e.target.value); location.search = params.toString(); }
  });
  window.addEventListener(LIVE ? "popstate" : "hashchange", function () { parseRoute(); refresh(); });

  function start() {
    document.documentElement.lang = lang;
    Array.prototype.forEach.call(document.querySelectorAll("[data-t]"), function (x) { x.textContent = t(x.getAttribute("data-t")); });
    el("lang").value = lang;
    el("safe-palette").checked = state.safe;
    el("status").textContent = t("loading");
    parseRoute();
    getJSON(url.election()).then(function (e) {
      state.election = e;
      return e.geo ? optional(url.geo()) : null;
    }).then(function (g) {
      state.geo = g;
      return refresh(true);
    }).then(listen).catch(function (e) {
      el("status").textContent = t("loadError", { error: e.message });
    });
  }
  start();
})();
