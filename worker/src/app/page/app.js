// Placeholder until the gallery page lands: uploads each chosen file and lists the results.
"use strict";
const gallery = document.getElementById("gallery");
function card(image) {
  const li = document.createElement("li");
  li.textContent = `${image.name}: ${image.state}`;
  gallery.prepend(li);
}
document.getElementById("files").addEventListener("change", (e) => {
  for (const file of e.target.files) {
    fetch(`/api/images?name=${encodeURIComponent(file.name)}`, {
      method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file,
    }).then((r) => r.json()).then((j) => card(j.error ? { name: file.name, state: j.error.message } : j));
  }
});
new EventSource("/api/events").addEventListener("ready", (e) => card(JSON.parse(e.data)));
