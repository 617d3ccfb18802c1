package sd

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pixelUnshuffleRef is torch.nn.functional.pixel_unshuffle on the CPU:
// out[n, c*p*p + dy*p + dx, y, x] = in[n, c, p*y+dy, p*x+dx].
func pixelUnshuffleRef(in []float32, n, c, h, w, p int) []float32 {
	out := make([]float32, len(in))
	hh, ww := h/p, w/p
	for b := 0; b < n; b++ {
		for ch := 0; ch < c; ch++ {
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					oc := ch*p*p + (y%p)*p + x%p
					out[((b*c*p*p+oc)*hh+y/p)*ww+x/p] = in[((b*c+ch)*h+y)*w+x]
				}
			}
		}
	}
	return out
}

// TestPixelCodec: Encode is pixel_unshuffle (checked element by element
// against the CPU rearrangement on a non-square batch), Decode inverts it
// exactly, Latents and Unscale apply the scale, and a vae/config.json
// naming the codec loads it, while a bad one is refused with the file
// named.
func TestPixelCodec(t *testing.T) {
	e := engine(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	const n, c, h, w, p = 2, 3, 12, 20, 4
	x := make([]float32, n*c*h*w)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	v, err := NewPixelCodec(e, c, p, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if v.Factor() != p || v.Cfg.LatentChannels != c*p*p {
		t.Fatalf("factor %d, latent channels %d", v.Factor(), v.Cfg.LatentChannels)
	}
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		mean, logvar := v.Encode(e.FromSlice(x, n, c, h, w))
		if got := mean.Shape(); got[1] != c*p*p || got[2] != h/p || got[3] != w/p {
			t.Fatalf("latent shape %v", got)
		}
		want := pixelUnshuffleRef(x, n, c, h, w, p)
		got, _ := mean.Read()
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("latent %d: %g, want %g", i, got[i], want[i])
			}
		}
		lv, _ := logvar.Read()
		if lv[0] != -30 || lv[len(lv)-1] != -30 {
			t.Errorf("log-variance %g..%g, want -30", lv[0], lv[len(lv)-1])
		}
		z := v.Latents(mean, nil, nil)
		zs, _ := z.Read()
		if zs[5] != 0.5*want[5] {
			t.Errorf("scaled latent %g, want %g", zs[5], 0.5*want[5])
		}
		back, _ := v.Decode(v.Unscale(z)).Read()
		for i := range x {
			if back[i] != x[i] {
				t.Fatalf("round trip pixel %d: %g, want %g", i, back[i], x[i])
			}
		}
	})

	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	os.WriteFile(cfg, []byte(`{"_class_name": "PixelUnshuffleCodec", "patch_size": 4, "in_channels": 3, "latent_channels": 48, "scaling_factor": 0.25}`), 0o644)
	l := &loader{e: e, p: &Pipeline{ScalingFactor: 0.25}}
	if ok, err := l.pixelCodec(cfg); !ok || err != nil || l.p.VAE.Patch != 4 || l.p.VAE.Scale != 0.25 {
		t.Fatalf("codec config: %v %v %+v", ok, err, l.p.VAE)
	}
	os.WriteFile(cfg, []byte(`{"_class_name": "PixelUnshuffleCodec", "patch_size": 4, "in_channels": 3, "latent_channels": 4}`), 0o644)
	if _, err := l.pixelCodec(cfg); err == nil || !strings.Contains(err.Error(), cfg) {
		t.Errorf("wrong latent_channels: %v", err)
	}
	os.WriteFile(cfg, []byte(`{"_class_name": "AutoencoderKL"}`), 0o644)
	if ok, err := l.pixelCodec(cfg); ok || err != nil {
		t.Errorf("AutoencoderKL config taken for a codec: %v %v", ok, err)
	}
}
