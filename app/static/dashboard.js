// Live refresh of the dashboard: every 2 s, swap each section with the server's HTML.
(() => {
  const live = document.getElementById("live");
  if (!live) return;
  const source = live.dataset.source;
  const shown = {};  // each section's last HTML, without its (always fresh) CSRF tokens
  const comparable = (html) => html.replace(/name="csrf_token" value="[^"]*"/g, "");
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(response.status);
      const data = await response.json();
      for (const [name, html] of Object.entries(data.html)) {
        const section = document.querySelector(`[data-section="${name}"]`);
        if (!section || shown[name] === comparable(html)) continue;
        if (section.querySelector("details[open]")) continue;  // a confirmation is open: keep it
        section.innerHTML = html;
        shown[name] = comparable(html);
      }
      live.textContent = "Live · updated " + new Date(data.generated_at).toLocaleTimeString();
      live.classList.remove("stale");
    } catch (error) {
      live.textContent = "Live refresh paused: " + error.message;
      live.classList.add("stale");
    } finally {
      busy = false;
    }
  }
  live.textContent = "Live · refreshing every 2 s";
  setInterval(refresh, 2000);
})();
