// A test source for pages: a steady tone (and optionally a canvas in a solid colour), so that a
// browser without a camera or microphone can publish something a listener can pick out.
export function toneStream(freq, { video = false, color = '#16a085', size = '320x180' } = {}) {
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  osc.frequency.value = freq;
  const gain = ctx.createGain();
  gain.gain.value = 0.3;
  const dest = ctx.createMediaStreamDestination();
  osc.connect(gain).connect(dest);
  osc.start();
  const tracks = [...dest.stream.getAudioTracks()];
  let timer = null;
  if (video) {
    const canvas = document.createElement('canvas');
    const [w, h] = size.split('x').map(Number);
    canvas.width = w || 320;
    canvas.height = h || 180;
    const g = canvas.getContext('2d');
    timer = setInterval(() => {
      g.fillStyle = color;
      g.fillRect(0, 0, canvas.width, canvas.height);
    }, 1000 / 15);
    tracks.push(...canvas.captureStream(15).getVideoTracks());
  }
  const stream = new MediaStream(tracks);
  stream.stopSource = () => {
    clearInterval(timer);
    osc.stop();
    void ctx.close();
  };
  return stream;
}
