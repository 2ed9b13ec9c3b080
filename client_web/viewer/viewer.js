// Renders one GLB once with three.js: index.html?glb=URL[&w=&h=&fov=&eye=&target=&up=&near=&far=&bg=]
// (see index.html for how to serve it). Sets window.viewerDone = true when the frame is drawn,
// or window.viewerError = message when something failed.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

const q = new URLSearchParams(location.search);
const num = (name, fallback) => (q.has(name) ? Number(q.get(name)) : fallback);
const vec = (name, fallback) => new THREE.Vector3(...(q.has(name) ? q.get(name).split(',').map(Number) : fallback));

// defaults: the product's portrait camera (PerspectiveCamera.portrait) in metres
const width = num('w', 512), height = num('h', 512);
const camera = new THREE.PerspectiveCamera(num('fov', 20), width / height, num('near', 0.2382), num('far', 5.955));
camera.position.copy(vec('eye', [0, -0.015, 1.191]));
camera.up.copy(vec('up', [0, 1, 0]));
camera.lookAt(vec('target', [0, -0.015, 0]));

const scene = new THREE.Scene();
scene.background = new THREE.Color('#' + (q.get('bg') || '6b7380'));

// the product's studio, roughly: sky/ground light, a warm key from the upper left front and a
// cool fill from the right, fixed to the camera (three's lights are physical: intensity pi
// gives a white surface lit head-on its full colour)
const linear = (r, g, b) => new THREE.Color().setRGB(r, g, b, THREE.LinearSRGBColorSpace);
scene.add(new THREE.HemisphereLight(linear(0.32, 0.34, 0.38), linear(0.18, 0.15, 0.13), Math.PI));
for (const [rgb, strength, dir] of [
  [[1.0, 0.97, 0.92], 0.95, [-0.45, 0.55, 0.70]], // key
  [[0.80, 0.86, 1.0], 0.35, [0.60, 0.10, 0.60]], // fill
]) {
  const light = new THREE.DirectionalLight(linear(...rgb), strength * Math.PI);
  light.position.set(...dir); // in the camera's frame; it shines towards light.target
  camera.add(light, light.target);
}
scene.add(camera);

const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.outputColorSpace = THREE.SRGBColorSpace;
renderer.setPixelRatio(1);
renderer.setSize(width, height);
document.body.appendChild(renderer.domElement);

try {
  if (!q.has('glb')) throw new Error('no GLB given: open index.html?glb=avatar.glb');
  const gltf = await new GLTFLoader().loadAsync(q.get('glb'));
  scene.add(gltf.scene);
  renderer.render(scene, camera);
  window.viewerDone = true;
} catch (err) {
  window.viewerError = String(err && err.message ? err.message : err);
  document.body.append(window.viewerError);
}
