package sd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/x448/float16"
)

func openFixture(t *testing.T, rel ...string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(append([]string{fixtures(t), "sd-tiny"}, rel...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestLDMTables_fixture converts every key of the single-file fixture and
// checks that the result is exactly the diffusers folder: the same keys,
// the same shapes, and values equal to the fp16 rounding of the diffusers
// fp32 tensors (which catches keys swapped between same-shaped modules,
// e.g. the decoder's reversed up blocks).
func TestLDMTables_fixture(t *testing.T) {
	sf := openFixture(t, "single-file", "sd-tiny.safetensors")
	if err := sniffSingleFile(sf); err != nil {
		t.Fatal(err)
	}
	parts := map[string][]string{}
	for _, n := range sf.Names() {
		found := false
		for _, pre := range []string{ldmUNetPrefix, ldmVAEPrefix, ldmTextPrefix} {
			if strings.HasPrefix(n, pre) {
				parts[pre] = append(parts[pre], strings.TrimPrefix(n, pre))
				found = true
			}
		}
		if !found {
			t.Errorf("key %q belongs to no model", n)
		}
	}
	type model struct {
		name, prefix string
		conv         func(*safetensors.File, []string) (tensorSet, *KeyTable, error)
		diffusers    *safetensors.File
	}
	total := 0
	for _, m := range []model{
		{"unet", ldmUNetPrefix, func(f *safetensors.File, k []string) (tensorSet, *KeyTable, error) {
			return convertUNet(f, k, false, UNetConfig{})
		}, openFixture(t, "diffusers", "unet", "diffusion_pytorch_model.safetensors")},
		{"vae", ldmVAEPrefix, convertVAE, openFixture(t, "diffusers", "vae", "diffusion_pytorch_model.safetensors")},
		{"text", ldmTextPrefix, convertText, openFixture(t, "diffusers", "text_encoder", "model.safetensors")},
	} {
		ts, tab, err := m.conv(sf, parts[m.prefix])
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if len(ts) != len(parts[m.prefix]) {
			t.Errorf("%s: %d keys converted from %d", m.name, len(ts), len(parts[m.prefix]))
		}
		total += len(ts)
		want := map[string]bool{}
		for _, k := range m.diffusers.Names() {
			want[k] = true
			src, ok := ts[k]
			if !ok {
				t.Errorf("%s: no single-file key converts to %q", m.name, k)
				continue
			}
			info, _ := m.diffusers.Info(k)
			if !equalShape(src.shape, info.Shape) {
				t.Errorf("%s: %q -> %q has shape %v, want %v", m.name, src.name, k, src.shape, info.Shape)
				continue
			}
			if back, ok := tab.ToLDM(k); !ok || m.prefix+back != src.name {
				t.Errorf("%s: %q converts back to %q, want %q", m.name, k, m.prefix+back, src.name)
			}
			got, _, err := sf.Float32(src.name)
			if err != nil {
				t.Fatal(err)
			}
			ref, _, err := m.diffusers.Float32(k)
			if err != nil {
				t.Fatal(err)
			}
			for i := range ref {
				if r := float16.Fromfloat32(ref[i]).Float32(); got[i] != r {
					t.Errorf("%s: %q[%d] = %g, want fp16(%g) = %g (from %q)", m.name, k, i, got[i], ref[i], r, src.name)
					break
				}
			}
		}
		for k, src := range ts {
			if !want[k] {
				t.Errorf("%s: %q converts to %q, which diffusers does not have", m.name, src.name, k)
			}
		}
		t.Logf("%s: %d keys convert one to one", m.name, len(ts))
	}
	if total != len(sf.Names()) {
		t.Errorf("%d of %d keys used", total, len(sf.Names()))
	}
}

// TestLDMTables_unknownKey: a key inside a model that the table does not
// know is an error naming the file and the key.
func TestLDMTables_unknownKey(t *testing.T) {
	sf := openFixture(t, "single-file", "sd-tiny.safetensors")
	var keys []string
	for _, n := range sf.Names() {
		if strings.HasPrefix(n, ldmVAEPrefix) {
			keys = append(keys, strings.TrimPrefix(n, ldmVAEPrefix))
		}
	}
	keys = append(keys, "encoder.mid.attn_1.extra.weight")
	_, _, err := convertVAE(sf, keys)
	if err == nil || !strings.Contains(err.Error(), "first_stage_model.encoder.mid.attn_1.extra.weight") || !strings.Contains(err.Error(), sf.Path) {
		t.Fatalf("got %v, want an error naming the file and the key", err)
	}
	t.Log(err)
}

// tinyConfigs are the sd-tiny fixture's configurations, written out.
func tinyConfigs() (UNetConfig, VAEConfig, clip.TextConfig) {
	u := UNetConfig{InChannels: 4, OutChannels: 4, BlockOutChannels: []int{32, 64, 64, 64}, LayersPerBlock: 2,
		CrossAttentionDim: 32, DownHasAttn: []bool{true, true, true, false}, TransformerDepth: 1, TimeEmbedDim: 128}
	v := VAEConfig{InChannels: 3, LatentChannels: 4, BlockOutChannels: []int{32, 32, 64, 64}, LayersPerBlock: 2}
	c := clip.TextConfig{HiddenSize: 32, Layers: 3, Intermediate: 37, MaxPositions: 77, VocabSize: 49408}
	return u, v, c
}

// TestSchemas_matchFixture: the schemas built from the configurations list
// exactly the diffusers fixture's tensors and shapes.
func TestSchemas_matchFixture(t *testing.T) {
	u, v, c := tinyConfigs()
	for _, m := range []struct {
		s    Schema
		file []string
	}{
		{UNetSchema(u), []string{"diffusers", "unet", "diffusion_pytorch_model.safetensors"}},
		{VAESchema(v), []string{"diffusers", "vae", "diffusion_pytorch_model.safetensors"}},
		{TextSchema(c), []string{"diffusers", "text_encoder", "model.safetensors"}},
	} {
		f := openFixture(t, m.file...)
		for _, k := range f.Names() {
			info, _ := f.Info(k)
			if s, ok := m.s[k]; !ok {
				t.Errorf("%s: schema lacks %q", m.file[1], k)
			} else if !equalShape(s, info.Shape) {
				t.Errorf("%s: schema has %q %v, file %v", m.file[1], k, s, info.Shape)
			}
		}
		if len(m.s) != len(f.Names()) {
			t.Errorf("%s: schema has %d keys, file %d", m.file[1], len(m.s), len(f.Names()))
		}
	}
}
