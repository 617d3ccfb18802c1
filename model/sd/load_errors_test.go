package sd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/model/safetensors"
)

// writeFake writes a safetensors file of zero-filled f32 tensors.
func writeFake(t *testing.T, path string, shapes map[string][]int) string {
	t.Helper()
	ts := map[string]safetensors.Tensor{}
	for k, s := range shapes {
		n := 1
		for _, d := range s {
			n *= d
		}
		ts[k] = safetensors.F32Tensor(make([]float32, n), s...)
	}
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// rewrite copies the single-file fixture to dir without the keys drop
// rejects.
func rewrite(t *testing.T, dir string, drop func(string) bool) string {
	t.Helper()
	src := openFixture(t, "single-file", "sd-tiny.safetensors")
	ts := map[string]safetensors.Tensor{}
	for _, n := range src.Names() {
		if drop(n) {
			continue
		}
		raw, info, err := src.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		ts[n] = safetensors.Tensor{DType: info.DType, Shape: info.Shape, Data: raw}
	}
	path := filepath.Join(dir, "model.safetensors")
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// linkTree mirrors the diffusers fixture into dir with symlinks, leaving
// out the files skip names (relative paths).
func linkTree(t *testing.T, dir string, skip ...string) string {
	t.Helper()
	src := tinyDiffusers(t)
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		for _, s := range skip {
			if rel == s {
				return nil
			}
		}
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		return os.Symlink(p, filepath.Join(dir, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLoad_errors: every bad input gets an error naming the file and the
// problem (and the key where one is at fault); other architectures are
// recognised.
func TestLoad_errors(t *testing.T) {
	e := engine(t)
	t.Setenv("INSTRUCTBOOTH_CLIP_BPE", "")
	unet := LoadOptions{Components: CompUNet}
	cases := []struct {
		name string
		make func(dir string) (path string, o LoadOptions)
		want []string // substrings of the error; "$path" is the path
		arch bool     // wraps ErrUnsupported
	}{
		{"missing path", func(dir string) (string, LoadOptions) {
			return filepath.Join(dir, "nope.safetensors"), unet
		}, []string{"$path", "no such file"}, false},
		{"pickle", func(dir string) (string, LoadOptions) {
			p := filepath.Join(dir, "model.ckpt")
			os.WriteFile(p, []byte("PK"), 0o644)
			return p, unet
		}, []string{"$path", "pickle"}, false},
		{"corrupt header", func(dir string) (string, LoadOptions) {
			p := filepath.Join(dir, "bad.safetensors")
			os.WriteFile(p, append([]byte{16, 0, 0, 0, 0, 0, 0, 0}, []byte(`{"a": [1, 2, 3]}`)...), 0o644)
			return p, unet
		}, []string{"$path", "invalid safetensors"}, false},
		{"truncated", func(dir string) (string, LoadOptions) {
			b, err := os.ReadFile(tinySingleFile(t))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "half.safetensors")
			os.WriteFile(p, b[:len(b)/2], 0o644)
			return p, unet
		}, []string{"$path", "outside the"}, false},
		{"missing U-Net tensor", func(dir string) (string, LoadOptions) {
			return rewrite(t, dir, func(k string) bool { return k == "model.diffusion_model.output_blocks.5.1.proj_out.weight" }),
				LoadOptions{Components: CompUNet, ConfigDir: tinyDiffusers(t)}
		}, []string{"$path", `missing tensor "model.diffusion_model.output_blocks.5.1.proj_out.weight"`}, false},
		{"missing VAE tensor", func(dir string) (string, LoadOptions) {
			return rewrite(t, dir, func(k string) bool { return k == "first_stage_model.decoder.mid.attn_1.q.weight" }),
				LoadOptions{Components: CompVAE}
		}, []string{"$path", `missing tensor "first_stage_model.decoder.mid.attn_1.q.weight"`}, false},
		{"missing text tensor", func(dir string) (string, LoadOptions) {
			return rewrite(t, dir, func(k string) bool {
					return k == "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.bias"
				}),
				LoadOptions{Components: CompText, ConfigDir: tinyDiffusers(t)}
		}, []string{"$path", `missing tensor "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.bias"`}, false},
		{"no tokenizer", func(dir string) (string, LoadOptions) {
			return rewrite(t, dir, func(string) bool { return false }), LoadOptions{Components: CompTokenizer}
		}, []string{"$path", "no CLIP tokenizer found", "TokenizerPath"}, false},
		{"not a checkpoint", func(dir string) (string, LoadOptions) {
			return writeFake(t, filepath.Join(dir, "x.safetensors"), map[string][]int{"encoder.weight": {2, 2}}), unet
		}, []string{"$path", "not a Stable Diffusion checkpoint"}, false},
		{"LoRA file", func(dir string) (string, LoadOptions) {
			return writeFake(t, filepath.Join(dir, "x.safetensors"), map[string][]int{
				"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": {4, 32},
			}), unet
		}, []string{"$path", "LoRA file"}, true},
		{"SDXL conditioner", func(dir string) (string, LoadOptions) {
			return writeFake(t, filepath.Join(dir, "x.safetensors"), map[string][]int{
				"model.diffusion_model.input_blocks.0.0.weight":                                    {320, 4, 3, 3},
				"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": {8, 4},
			}), unet
		}, []string{"$path", "not supported: looks like SDXL"}, true},
		{"SDXL label_emb", func(dir string) (string, LoadOptions) {
			return writeFake(t, filepath.Join(dir, "x.safetensors"), map[string][]int{
				"model.diffusion_model.input_blocks.0.0.weight": {320, 4, 3, 3},
				"model.diffusion_model.label_emb.0.0.weight":    {1280, 2816},
			}), unet
		}, []string{"$path", "not supported: looks like SDXL", "label_emb"}, true},
		{"SD 2.x OpenCLIP", func(dir string) (string, LoadOptions) {
			return writeFake(t, filepath.Join(dir, "x.safetensors"), map[string][]int{
				"model.diffusion_model.input_blocks.0.0.weight":                    {320, 4, 3, 3},
				"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias": {3072},
			}), unet
		}, []string{"$path", "not supported: looks like SD 2.x", "OpenCLIP"}, true},
		{"SD 2.x cross-attention 1024", func(dir string) (string, LoadOptions) {
			return writeFake(t, filepath.Join(dir, "x.safetensors"), map[string][]int{
				"model.diffusion_model.input_blocks.0.0.weight":                                 {320, 4, 3, 3},
				"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": {320, 1024},
			}), unet
		}, []string{"$path", "not supported: looks like SD 2.x", "cross-attention dim 1024"}, true},
		{"SD 2.x linear projection", func(dir string) (string, LoadOptions) {
			return writeFake(t, filepath.Join(dir, "x.safetensors"), map[string][]int{
				"model.diffusion_model.input_blocks.0.0.weight":         {320, 4, 3, 3},
				"model.diffusion_model.input_blocks.1.1.proj_in.weight": {320, 320},
			}), unet
		}, []string{"$path", "not supported: looks like SD 2.x", "linear proj_in"}, true},
		{"diffusers without model_index.json", func(dir string) (string, LoadOptions) {
			return linkTree(t, dir, "model_index.json"), unet
		}, []string{"$path", "no model_index.json"}, false},
		{"diffusers without unet config", func(dir string) (string, LoadOptions) {
			return linkTree(t, dir, "unet/config.json"), unet
		}, []string{"unet/config.json", "no such file"}, false},
		{"diffusers without unet weights", func(dir string) (string, LoadOptions) {
			return linkTree(t, dir, "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors"), unet
		}, []string{"unet", "missing weights", "diffusion_pytorch_model.safetensors"}, false},
		{"diffusers missing tensor", func(dir string) (string, LoadOptions) {
			linkTree(t, dir, "vae/diffusion_pytorch_model.safetensors")
			src := openFixture(t, "diffusers", "vae", "diffusion_pytorch_model.safetensors")
			ts := map[string]safetensors.Tensor{}
			for _, n := range src.Names() {
				if n != "decoder.up_blocks.2.resnets.0.conv_shortcut.bias" {
					raw, info, _ := src.Raw(n)
					ts[n] = safetensors.Tensor{DType: info.DType, Shape: info.Shape, Data: raw}
				}
			}
			if err := safetensors.WriteFile(filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors"), ts, nil); err != nil {
				t.Fatal(err)
			}
			return dir, LoadOptions{Components: CompVAE}
		}, []string{"vae/diffusion_pytorch_model.safetensors", `missing tensor "decoder.up_blocks.2.resnets.0.conv_shortcut.bias"`}, false},
		{"diffusers SDXL", func(dir string) (string, LoadOptions) {
			linkTree(t, dir, "model_index.json")
			os.WriteFile(filepath.Join(dir, "model_index.json"), []byte(`{"_class_name": "StableDiffusionXLPipeline"}`), 0o644)
			return dir, unet
		}, []string{"model_index.json", "not supported: looks like SDXL"}, true},
		{"diffusers SD 2.x", func(dir string) (string, LoadOptions) {
			linkTree(t, dir, "unet/config.json")
			os.WriteFile(filepath.Join(dir, "unet", "config.json"), []byte(`{"cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20]}`), 0o644)
			return dir, unet
		}, []string{"unet/config.json", "not supported: looks like SD 2.x"}, true},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			path, o := c.make(t.TempDir())
			p, err := Load(e, path, o)
			if err == nil {
				p.Release()
				t.Fatal("loaded without an error")
			}
			msg := err.Error()
			for _, w := range c.want {
				w = strings.ReplaceAll(w, "$path", path)
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if got := errors.Is(err, ErrUnsupported); got != c.arch {
				t.Errorf("errors.Is(ErrUnsupported) = %v", got)
			}
			t.Log(msg)
		})
	}
}
