// The complete lists of a site written by diversity-gpu: decodes one
// ordering's packed entries and shows them as the reader scrolls, from any
// position (complete.html#KIND/ID/POSITION). No library and no network:
// every data file is a plain <script>, so the site works from file:// too.
"use strict";
var DG = (function () {
  var BATCH = 50;
  var site = null;
  var lists = {};
  var chunks = {};
  var loading = {};
  var view = null;

  // Loads a data file once; its script calls back into DG.
  function load(src) {
    if (!loading[src]) {
      loading[src] = new Promise(function (ok, fail) {
        var s = document.createElement("script");
        s.src = src;
        s.onload = ok;
        s.onerror = function () {
          delete loading[src];
          fail(new Error("cannot load " + src));
        };
        document.head.appendChild(s);
      });
    }
    return loading[src];
  }

  // One character of a packed list: printable ASCII without '"' and '\'.
  function digit(c) {
    return c - 32 - (c > 34 ? 1 : 0) - (c > 92 ? 1 : 0);
  }

  // Groups of k entries (each below site.radix) packed into m characters.
  function decode(data, len) {
    var k = site.k, m = site.m, n = site.radix;
    var out = new Uint32Array(len);
    var group = new Array(k);
    for (var at = 0, i = 0; at < len; i += m) {
      var v = 0;
      for (var j = 0; j < m; j++) v = v * 93 + digit(data.charCodeAt(i + j));
      for (j = k - 1; j >= 0; j--) {
        group[j] = v % n;
        v = Math.floor(v / n);
      }
      for (j = 0; j < k && at < len; j++) out[at++] = group[j];
    }
    return out;
  }

  function thousands(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function link(parent, href, text) {
    var a = el("a", null, text);
    a.href = href;
    parent.appendChild(a);
    return a;
  }

  function poem(row) {
    var c = chunks[Math.floor(row / site.chunk)];
    return c && c[row % site.chunk];
  }

  // Loads the text chunks that rows need.
  function need(rows) {
    var files = {};
    for (var i = 0; i < rows.length; i++) {
      var c = Math.floor(rows[i] / site.chunk);
      if (!chunks[c]) files["complete/poems-" + c + ".js"] = true;
    }
    return Promise.all(Object.keys(files).map(load));
  }

  // One poem as on the static pages: colour bar, title, key, text, links.
  function block(row, pos, cls) {
    var p = poem(row);
    var d = el("div", cls);
    if (pos) d.id = "e-" + pos;
    if (p[4]) {
      var bar = el("div", "bar");
      bar.style.background = p[4];
      d.appendChild(bar);
    }
    var t = el("p", "t");
    if (pos) t.appendChild(el("span", "n", thousands(pos) + ". "));
    t.appendChild(document.createTextNode(p[1]));
    d.appendChild(t);
    var meta = el("div", "meta");
    meta.appendChild(el("span", "key", p[0]));
    if (p[2]) meta.appendChild(document.createTextNode(" · " + p[2]));
    if (p[3]) meta.appendChild(document.createTextNode(" · " + p[3]));
    link(meta, "similar/" + p[5] + "-" + site.first_page + ".html", "similar");
    link(meta, "different/" + p[5] + "-" + site.first_page + ".html", "different");
    link(meta, "complete.html#similar/" + p[5], "complete lists");
    d.appendChild(meta);
    d.appendChild(el("pre", null, p[6]));
    return d;
  }

  // Each list's files and heading.
  var KINDS = {
    similar: ["complete/similar/", "Similar to"],
    different: ["complete/different/", "Different from"],
    "theme-similar": ["complete/themes/similar-", "Close to the theme"],
    "theme-different": ["complete/themes/different-", "Away from the theme"]
  };

  // KIND/ID/POSITION from the address; null when it names no list.
  function parse() {
    var parts;
    try {
      parts = decodeURIComponent(location.hash.slice(1)).split("/");
    } catch (e) {
      return null;
    }
    var kind = KINDS[parts[0]];
    if (!kind || !/^[A-Za-z0-9._~-]+$/.test(parts[1] || "")) return null;
    var pos = parseInt(parts[2] || "1", 10);
    return { kind: parts[0], id: parts[1], pos: pos > 0 ? pos : 1 };
  }

  function fail(message) {
    var head = document.getElementById("head");
    head.textContent = "";
    head.appendChild(el("p", null, message));
  }

  function show() {
    var at = parse();
    if (!at) return fail("This address names no list. Every poem's pages link to their complete lists.");
    var key = at.kind + "/" + at.id;
    document.getElementById("list").textContent = "";
    document.getElementById("more").textContent = "Loading…";
    view = null;
    load(KINDS[at.kind][0] + at.id + ".js").then(function () {
      var list = lists[key];
      if (!list.entries) list.entries = decode(list.data, list.info.len);
      var anchor = list.info.row >= 0 ? [list.info.row] : [];
      return need(anchor).then(function () {
        start(at, list);
      });
    }).catch(function (e) {
      fail("This list is not on this site (" + e.message + ").");
    });
  }

  // Shows `list` from position `at.pos`.
  function start(at, list) {
    var len = list.entries.length;
    var first = Math.min(at.pos, Math.max(len, 1));
    view = { at: at, list: list, next: first - 1, busy: false };
    var head = document.getElementById("head");
    head.textContent = "";
    var kind = KINDS[at.kind];
    var name = list.info.row >= 0 ? poem(list.info.row)[1] : "“" + list.info.name + "”";
    document.title = kind[1] + " " + name + " — complete list";
    head.appendChild(el("h1", null, kind[1] + " " + name));
    if (list.info.row >= 0) head.appendChild(block(list.info.row, 0, "anchor"));
    else head.appendChild(el("p", "meta", list.info.text));
    var total = list.info.total;
    var what = len >= total ? "All " + thousands(total) + " entries" :
      "The first " + thousands(len) + " of " + thousands(total) + " entries (this site holds no more)";
    head.appendChild(el("p", "meta", what + ", in order. Scroll for more, or go to a position."));
    if (first > 1) link(head, "#" + at.kind + "/" + at.id + "/" + Math.max(1, first - BATCH), "← earlier entries");
    var form = document.getElementById("jump");
    form.hidden = false;
    document.getElementById("pos").max = len;
    document.getElementById("count").textContent = " of " + thousands(len);
    document.getElementById("list").textContent = "";
    more();
  }

  // Appends the next batch of entries, then goes on while the end is in view.
  function more() {
    if (!view || view.busy) return;
    var v = view, entries = v.list.entries, end = document.getElementById("more");
    if (v.next >= entries.length) {
      end.textContent = "End of the list: " + thousands(entries.length) + " entries.";
      return;
    }
    v.busy = true;
    end.textContent = "Loading…";
    var rows = Array.prototype.slice.call(entries.subarray(v.next, v.next + BATCH));
    need(rows).then(function () {
      if (view !== v) return;
      var list = document.getElementById("list");
      for (var i = 0; i < rows.length; i++) list.appendChild(block(rows[i], v.next + i + 1, "poem"));
      v.next += rows.length;
      v.busy = false;
      end.textContent = "";
      if (end.getBoundingClientRect().top < window.innerHeight + 1200) more();
      else if (v.next >= entries.length) more();
    }).catch(function (e) {
      v.busy = false;
      end.textContent = "Cannot load these entries (" + e.message + ").";
    });
  }

  function init() {
    document.getElementById("jump").addEventListener("submit", function (e) {
      e.preventDefault();
      var at = parse();
      var pos = parseInt(document.getElementById("pos").value, 10);
      if (at && pos > 0) location.hash = at.kind + "/" + at.id + "/" + pos;
    });
    window.addEventListener("hashchange", show);
    window.addEventListener("scroll", more, { passive: true });
    if (window.IntersectionObserver) {
      new IntersectionObserver(function (seen) {
        if (seen[0].isIntersecting) more();
      }, { rootMargin: "1200px" }).observe(document.getElementById("more"));
    }
    show();
  }

  return {
    // complete/site.js: the packing and the page names.
    site: function (s) {
      site = s;
      if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
      else init();
    },
    // complete/poems-C.js: rows C*chunk onwards: [key, title, category, date, colour, stem, text].
    poems: function (c, rows) {
      chunks[c] = rows;
    },
    // complete/KIND/ID.js: one ordering.
    list: function (kind, id, info, data) {
      lists[kind + "/" + id] = { info: info, data: data };
    }
  };
})();
