// Body of the viewer's js_on_load (ui/viewer.py): `element`, `props` and `watch` come from Gradio.
// props.value is the JSON payload of ui.viewer.ViewerFiles.payload (file paths, colours, windows).
const canvas = element.querySelector(".cv-canvas");
const readout = element.querySelector(".cv-readout");
const opacity = element.querySelector(".cv-opacity");
let nv = null;
let shown = null; // the payload drawn now
let windows = {};
let labels = {}; // overlay file name -> mask name
const FOCUS_ZOOM = 2; // an answer's mask or landmark is shown enlarged this much (the reset button undoes it)

function viewer() {
  if (nv) return nv;
  const NV = window.niivue;
  nv = new NV.Niivue({
    backColor: [0, 0, 0, 1],
    crosshairColor: [0.2, 1, 0.2, 1],
    crosshairWidth: 1,
    show3Dcrosshair: true,
    isOrientationTextVisible: true,
    isRadiologicalConvention: true, // radiologists read with the patient's left on screen right
    // The 3D tile is opt-in: in software WebGL (no GPU) it makes each wheel step ~110 ms instead of ~17 ms.
    multiplanarShowRender: NV.SHOW_RENDER.NEVER,
    dragAndDropEnabled: false,
    isResizeCanvas: true,
  });
  nv.attachToCanvas(canvas);
  // Left click places the crosshair; right or shift-left drag sets window/level; middle drag pans.
  nv.setMouseEventConfig({
    leftButton: { primary: NV.DRAG_MODE.crosshair, withShift: NV.DRAG_MODE.windowing },
    rightButton: NV.DRAG_MODE.windowing,
    centerButton: NV.DRAG_MODE.pan,
  });
  nv.setSliceType(nv.sliceTypeMultiplanar);
  nv.onLocationChange = (data) => {
    const v = data.values && data.values[0];
    if (!v) return;
    const [i, j, k] = swapIndexing(Array.from(v.vox).map((x) => Math.round(x)), nv.volumes[0]);
    const hu = Math.round(v.value);
    let text = `HU ${hu} · voxel ${i}, ${j}, ${k}`;
    const inside = (data.values || []).slice(1).filter((o) => o.value > 0.5).map((o) => labels[o.name] || o.name);
    if (inside.length) text += ` · in ${inside.join(", ")}`;
    readout.textContent = text;
    readout.dataset.voxel = `${i},${j},${k}`;
    readout.dataset.hu = `${hu}`;
  };
  return nv;
}

// NiiVue indexes voxels after turning the volume to RAS (volume.permRAS: for each RAS axis, the file's
// axis, 1-based, negative when flipped). The readout and the answer's focus use the study's own
// [i, j, k] (LPS), so both go through this mapping, which is its own inverse.
function swapIndexing(vox, vol) {
  const out = [0, 0, 0];
  const perm = vol.permRAS || [1, 2, 3];
  for (let a = 0; a < 3; a++) {
    const axis = Math.abs(perm[a]) - 1;
    const n = vol.hdr.dims[axis + 1];
    if (perm[a] > 0) out[axis] = vox[a];
    else out[axis] = n - 1 - vox[a];
  }
  return out;
}

function fileUrl(path) {
  return "gradio_api/file=" + path.split("/").map(encodeURIComponent).join("/");
}

async function show() {
  const raw = props.value;
  if (shown && raw === shown.raw) return; // the same files: nothing to reload
  let payload;
  try {
    payload = raw ? JSON.parse(raw) : null;
  } catch (err) {
    payload = null;
  }
  if (!payload || !payload.volume) return;
  if (!window.niivue) {
    readout.textContent = "The viewer script did not load.";
    return;
  }
  const v = viewer();
  windows = payload.windows || {};
  const sameStudy = shown && shown.volume === payload.volume;
  const crosshair = sameStudy ? [...v.scene.crosshairPos] : null;
  const lohi = sameStudy && v.volumes.length ? [v.volumes[0].cal_min, v.volumes[0].cal_max] : windows.cardiac;
  // NiiVue reads the format from `name`, so each file keeps its own name; `labels` maps it back to the mask.
  const base = (path) => path.split("/").pop();
  labels = Object.fromEntries(payload.overlays.map((o) => [base(o.path), o.name]));
  const list = [{ url: fileUrl(payload.volume), name: base(payload.volume), colormap: "gray", cal_min: lohi[0], cal_max: lohi[1] }];
  for (const o of payload.overlays) {
    const cmap = "cv_" + o.color.join("_");
    v.addColormap(cmap, { R: [0, o.color[0]], G: [0, o.color[1]], B: [0, o.color[2]], A: [0, 255], I: [0, 255] });
    list.push({ url: fileUrl(o.path), name: base(o.path), colormap: cmap, cal_min: 0, cal_max: 1,
                opacity: parseFloat(opacity.value) });
  }
  readout.textContent = "Loading the study…";
  await v.loadVolumes(list);
  const newFocus = payload.focus && (!sameStudy || JSON.stringify(payload.focus) !== JSON.stringify(shown.focus));
  shown = payload;
  shown.raw = raw;
  if (newFocus) {
    v.scene.crosshairPos = v.vox2frac(swapIndexing(payload.focus, v.volumes[0])); // go to the mask or landmark
    // A coronary mask is a few pixels wide in a 310 px multiplanar tile: enlarge around the crosshair,
    // from the unzoomed view so the point stays on screen (NiiVue's own wheel-zoom arithmetic).
    const c = v.frac2mm(v.scene.crosshairPos);
    v.scene.pan2Dxyzmm = [(1 - FOCUS_ZOOM) * c[0], (1 - FOCUS_ZOOM) * c[1], (1 - FOCUS_ZOOM) * c[2], FOCUS_ZOOM];
  } else if (crosshair) v.scene.crosshairPos = crosshair;
  v.drawScene();
  v.createOnLocationChange();
  canvas.dataset.loaded = String(payload.load);
  canvas.dataset.overlays = String(payload.overlays.length);
  canvas.dataset.focus = payload.focus ? payload.focus.join(",") : "";
  canvas.dataset.volume = fileUrl(payload.volume);
}

element.querySelectorAll("[data-preset]").forEach((b) => b.addEventListener("click", () => {
  const w = windows[b.dataset.preset];
  if (!nv || !nv.volumes.length || !w) return;
  nv.volumes[0].cal_min = w[0];
  nv.volumes[0].cal_max = w[1];
  nv.updateGLVolume();
}));
element.querySelectorAll("[data-zoom]").forEach((b) => b.addEventListener("click", () => {
  if (!nv) return;
  const p = [...nv.scene.pan2Dxyzmm];
  const f = parseFloat(b.dataset.zoom);
  nv.setPan2Dxyzmm(f === 0 ? [0, 0, 0, 1] : [p[0], p[1], p[2], Math.min(8, Math.max(0.5, p[3] * f))]);
}));
element.querySelector(".cv-3d").addEventListener("change", (e) => {
  if (!nv) return;
  nv.opts.multiplanarShowRender = e.target.checked ? window.niivue.SHOW_RENDER.ALWAYS : window.niivue.SHOW_RENDER.NEVER;
  nv.setSliceType(nv.sliceTypeMultiplanar); // redraws the layout with or without the 3D tile
});
opacity.addEventListener("input", () => {
  if (!nv) return;
  nv.volumes.slice(1).forEach((vol) => { vol.opacity = parseFloat(opacity.value); });
  nv.updateGLVolume();
});

// One load at a time: an answer updates the value twice in a row, and two overlapping loadVolumes
// calls would leave the viewer with a mixed volume list.
let pending = Promise.resolve();
function request() {
  pending = pending.then(show).catch((err) => { readout.textContent = `The viewer could not show the study (${err}).`; });
}
watch("value", request);
request();
