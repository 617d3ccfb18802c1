// Package dino is the DINO ViT image embedding used for subject fidelity:
// the class token of the final LayerNorm output of a self-supervised ViT
// (facebookresearch/dino VisionTransformer.forward with num_classes=0),
// compared between images by cosine similarity.
//
// Two checkpoint layouts load into the same model (package vit):
//   - DINO's own (dino_deitsmall16_pretrain.pth, timm keys, LayerNorm eps
//     1e-6), as .pth or .safetensors; a training checkpoint's "teacher"
//     backbone is taken when present;
//   - transformers' ViTModel (facebook/dino-vits16: a folder with
//     config.json and model.safetensors or pytorch_model.bin), converted by
//     vit.HFTable. Its LayerNorm eps comes from config.json: 1e-12 for the
//     converted Hub models, which makes them a slightly different model.
package dino

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/torchpt"
	"github.com/instructbooth/instructbooth/model/vit"
)

// Options override what the checkpoint and its config.json say.
type Options struct {
	// ConfigPath is a config.json (DINO-style "num_heads", or transformers'
	// "num_attention_heads"; "layer_norm_eps" in both). Default: the
	// folder's or the file's sibling config.json, if any.
	ConfigPath string
	// Heads and Eps override the configuration when non-zero. Without
	// either, heads = width/64 and eps = 1e-6 (DINO) or 1e-12 (transformers).
	Heads int
	Eps   float32
}

// Model is a loaded DINO backbone.
type Model struct {
	ViT *vit.Model
	// Layout is "dino" or "hf": the layout the weights were read from.
	Layout string
	Path   string
}

type fileConfig struct {
	NumHeads   int      `json:"num_heads"`
	NumAttn    int      `json:"num_attention_heads"`
	Eps        *float64 `json:"layer_norm_eps"`
	PatchSize  int      `json:"patch_size"`
	HiddenSize int      `json:"hidden_size"`
}

// Load reads a DINO checkpoint: a file (.pth, .pt, .bin or .safetensors, by
// content) or a transformers folder.
func Load(e *gpu.Engine, path string, opt Options) (*Model, error) {
	file, cfgPath := path, opt.ConfigPath
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("dino: %w", err)
	} else if st.IsDir() {
		file = ""
		for _, n := range []string{"model.safetensors", "pytorch_model.bin"} {
			if _, err := os.Stat(filepath.Join(path, n)); err == nil {
				file = filepath.Join(path, n)
				break
			}
		}
		if file == "" {
			return nil, fmt.Errorf("dino: %s holds neither model.safetensors nor pytorch_model.bin", path)
		}
	}
	if cfgPath == "" {
		if c := filepath.Join(filepath.Dir(file), "config.json"); exists(c) {
			cfgPath = c
		}
	}
	var fc fileConfig
	if cfgPath != "" {
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			return nil, fmt.Errorf("dino: %w", err)
		}
		if err := json.Unmarshal(b, &fc); err != nil {
			return nil, fmt.Errorf("dino: %s: %w", cfgPath, err)
		}
	}
	ck, err := torchpt.OpenCheckpoint(file)
	if err != nil {
		return nil, fmt.Errorf("dino: %w", err)
	}
	defer ck.Close()
	layout, table := "dino", dinoTable(ck.Names())
	if _, ok := ck.Info("embeddings.cls_token"); ok {
		layout, table = "hf", vit.HFTable
	} else if _, ok := ck.Info("vit.embeddings.cls_token"); ok {
		layout, table = "hf", vit.HFTable
	}
	w, err := vit.LoadWeights(e, ck, file, table)
	if err != nil {
		return nil, fmt.Errorf("dino: %w", err)
	}
	cfg := vit.Config{InterpolatePos: true, Heads: max(fc.NumHeads, fc.NumAttn), Eps: 1e-6}
	if layout == "hf" {
		cfg.Eps = 1e-12 // transformers' ViTConfig default
	}
	if fc.Eps != nil {
		cfg.Eps = float32(*fc.Eps)
	}
	if opt.Heads != 0 {
		cfg.Heads = opt.Heads
	}
	if opt.Eps != 0 {
		cfg.Eps = opt.Eps
	}
	m, err := vit.New(w, cfg)
	if err != nil {
		w.Release()
		return nil, fmt.Errorf("dino: %s: %w", file, err)
	}
	if fc.PatchSize != 0 && fc.PatchSize != m.Cfg.Patch || fc.HiddenSize != 0 && fc.HiddenSize != m.Cfg.Width {
		w.Release()
		return nil, fmt.Errorf("dino: %s says patch %d, width %d; the weights have %d, %d", cfgPath, fc.PatchSize, fc.HiddenSize, m.Cfg.Patch, m.Cfg.Width)
	}
	return &Model{ViT: m, Layout: layout, Path: file}, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// dinoTable reads DINO's own keys: a bare backbone state_dict, or a
// training checkpoint's teacher ("teacher.backbone.*", possibly under
// "module."); the projection head is skipped.
func dinoTable(names []string) vit.Table {
	prefix := ""
	for _, p := range []string{"teacher.backbone.", "teacher.module.backbone.", "backbone.", "module.backbone.", "module."} {
		for _, n := range names {
			if strings.HasPrefix(n, p+"cls_token") {
				prefix = p
				break
			}
		}
		if prefix != "" {
			break
		}
	}
	return func(k string) (vit.Target, bool) {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || strings.HasPrefix(rest, "head.") {
			return vit.Target{}, false
		}
		return vit.Target{Key: rest}, true
	}
}

// Release frees the weights.
func (m *Model) Release() {
	m.ViT.Release()
	m.ViT.W.Release()
}

// Embed returns the DINO embeddings [B, D] of pixels [B, 3, H, W]
// (normalised with ImageNet's mean and std; sizes other than the trained
// one interpolate the position embeddings). Differentiable.
func (m *Model) Embed(pixels *gpu.Tensor) (*gpu.Tensor, error) {
	e := m.ViT.W.E
	s := e.Scope()
	out, err := m.ViT.Forward(pixels)
	if err != nil {
		s.Close()
		return nil, err
	}
	cls := vit.Token(e, out.Last, 0)
	s.Close(cls)
	return cls, nil
}

// Cosine is the cosine similarity of two embeddings (subject fidelity).
func Cosine(a, b []float32) (float64, error) {
	if len(a) != len(b) || len(a) == 0 {
		return 0, errors.New("dino: cosine of vectors of different or zero length")
	}
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0, errors.New("dino: cosine with a zero vector")
	}
	return ab / math.Sqrt(aa*bb), nil
}
