// The operator page: inspect an image (drop or choose), see the overlay, score and verdict; the models; the history,
// refreshed every two seconds so that images sent by the line appear as they come.
const $ = id => document.getElementById(id);
const fmt = v => v === null || v === undefined ? '–' : Number(v).toPrecision(5);
const verdictText = v => v === true ? 'ANOMALOUS' : v === false ? 'GOOD' : 'no threshold';
const verdictClass = v => v === true ? 'anomalous' : v === false ? 'good' : 'unknown';

async function loadModels() {
  const models = await (await fetch('/api/models')).json();
  const select = $('model');
  const chosen = select.value;
  select.replaceChildren(...models.map(m => new Option(`${m.name} (${m.algorithm})`, m.name)));
  if (models.some(m => m.name === chosen)) select.value = chosen;
  $('models').tBodies[0].replaceChildren(...models.map(m => {
    const row = document.createElement('tr');
    for (const text of [m.name, m.algorithm, m.version.slice(0, 12), `${m.inputWidth}×${m.inputHeight}`,
                        m.threshold === null ? 'none' : `${fmt(m.threshold)} (${m.thresholdSource})`, m.backbone ?? '–',
                        new Date(m.loadedAt).toLocaleTimeString()]) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
}

async function loadHealth() {
  const response = await fetch('/health');
  const health = await response.json();
  const badge = $('health');
  badge.textContent = health.status + (health.failed.length ? `: ${health.failed.map(f => f.name).join(', ')} refused` : '');
  badge.className = 'badge ' + (response.ok ? 'good' : 'anomalous');
  badge.title = health.failed.map(f => `${f.file}: ${f.error}`).join('\n');
}

async function loadHistory() {
  const records = await (await fetch('/api/inspections?limit=24')).json();
  $('history').replaceChildren(...records.map(r => {
    const item = document.createElement('li');
    item.dataset.id = r.id;
    const img = document.createElement('img');
    img.src = r.overlayUrl ?? r.imageUrl;
    img.alt = r.fileName;
    img.loading = 'lazy';
    const caption = document.createElement('div');
    caption.innerHTML = `<span class="${verdictClass(r.isAnomalous)}">${verdictText(r.isAnomalous)}</span> ${fmt(r.score)}`;
    const detail = document.createElement('div');
    detail.className = 'hint';
    detail.textContent = `${r.model} · ${r.fileName} · ${new Date(r.time).toLocaleTimeString()}`;
    item.append(img, caption, detail);
    return item;
  }));
}

async function inspect(file) {
  $('error').hidden = true;
  const form = new FormData();
  form.append('image', file, file.name);
  const response = await fetch(`/api/inspect/${encodeURIComponent($('model').value)}?map=true`, { method: 'POST', body: form });
  const body = await response.json();
  if (!response.ok) {
    $('error').textContent = `${body.title ?? response.status}: ${body.detail ?? ''}`;
    $('error').hidden = false;
    return;
  }
  $('overlay').src = body.overlayPng ? `data:image/png;base64,${body.overlayPng}` : URL.createObjectURL(file);
  $('verdict').textContent = verdictText(body.isAnomalous);
  $('verdict').className = verdictClass(body.isAnomalous);
  $('score').textContent = fmt(body.score);
  $('threshold').textContent = body.threshold === null ? 'none (the model has no threshold)' : fmt(body.threshold);
  $('version').textContent = body.modelVersion;
  $('elapsed').textContent = `${body.elapsedMs.toFixed(1)} ms`;
  $('result').hidden = false;
  loadHistory();
}

const drop = $('drop');
drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', e => {
  e.preventDefault();
  drop.classList.remove('over');
  if (e.dataTransfer.files.length) inspect(e.dataTransfer.files[0]);
});
$('file').addEventListener('change', e => { if (e.target.files.length) inspect(e.target.files[0]); e.target.value = ''; });

async function refresh() {
  try {
    await Promise.all([loadModels(), loadHealth(), loadHistory()]);
  } catch (e) {
    $('health').textContent = 'service unreachable';
  }
}
refresh();
setInterval(refresh, 2000);
