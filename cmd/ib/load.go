package main

// TEMPORARY: a minimal loader for diffusers folders, to be replaced by
// model/sd.Load (which also reads single-file checkpoints and fp16
// variants, validates every parameter and detects other architectures)
// when it lands. Keep this file small; do not grow it.

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
)

// modelDir is a diffusers folder (model_index.json, text_encoder/, unet/,
// vae/, tokenizer/, scheduler/).
type modelDir struct {
	path string
	e    *gpu.Engine
	w    []*nn.Weights
}

func openModel(e *gpu.Engine, path string) (*modelDir, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: single-file checkpoints are not supported by this build yet (use a diffusers folder)", path)
	}
	if _, err := os.Stat(filepath.Join(path, "model_index.json")); err != nil {
		return nil, fmt.Errorf("%s: not a diffusers folder (no model_index.json)", path)
	}
	return &modelDir{path: path, e: e}, nil
}

// release frees every weight loaded so far.
func (m *modelDir) release() {
	for _, w := range m.w {
		w.Release()
	}
	m.w = nil
}

// weights loads the first existing file of names under sub/.
func (m *modelDir) weights(sub string, names ...string) (*nn.Weights, error) {
	for _, n := range names {
		p := filepath.Join(m.path, sub, n)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		f, err := safetensors.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		w := nn.NewWeights(m.e)
		m.w = append(m.w, w)
		if _, err := w.Load(f, nn.Identity); err != nil {
			return nil, err
		}
		return w, nil
	}
	return nil, fmt.Errorf("%s: no weights (looked for %v)", filepath.Join(m.path, sub), names)
}

func (m *modelDir) textModel() (*clip.TextModel, error) {
	cfg, err := clip.ReadTextConfig(filepath.Join(m.path, "text_encoder", "config.json"))
	if err != nil {
		return nil, err
	}
	w, err := m.weights("text_encoder", "model.safetensors", "model.fp16.safetensors")
	if err != nil {
		return nil, err
	}
	t, err := clip.NewTextModel(w, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(m.path, "text_encoder"), err)
	}
	return t, nil
}

func (m *modelDir) unet() (*sd.UNet, error) {
	cfg, err := sd.ReadUNetConfig(filepath.Join(m.path, "unet", "config.json"))
	if err != nil {
		return nil, err
	}
	w, err := m.weights("unet", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
	if err != nil {
		return nil, err
	}
	u, err := sd.NewUNet(w, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(m.path, "unet"), err)
	}
	return u, nil
}

func (m *modelDir) vae() (*sd.VAE, error) {
	w, err := m.weights("vae", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
	if err != nil {
		return nil, err
	}
	v, err := sd.NewVAE(w)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(m.path, "vae"), err)
	}
	return v, nil
}

// components loads everything generation needs.
func (m *modelDir) components() (generate.Components, error) {
	c := generate.Components{Name: filepath.Base(filepath.Clean(m.path))}
	var err error
	if c.Tokenizer, err = clip.LoadHF(filepath.Join(m.path, "tokenizer")); err != nil {
		return c, err
	}
	scfg, err := sched.LoadConfig(filepath.Join(m.path, "scheduler", "scheduler_config.json"))
	if err != nil {
		return c, err
	}
	c.Schedule = sched.New(scfg)
	if c.Text, err = m.textModel(); err != nil {
		return c, err
	}
	if c.UNet, err = m.unet(); err != nil {
		return c, err
	}
	c.VAE, err = m.vae()
	return c, err
}
