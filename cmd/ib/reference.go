package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sd"
)

// referenceCmd runs one model component on the tensors of --in and writes
// its outputs to --out, with the sd-tiny fixtures' names:
//
//	text_encoder: in/input_ids [N, L] -> out/last_hidden_state [N, L, D]
//	              (also out/pooler_output, out/hidden_states_penultimate,
//	              out/embeddings)
//	unet:         in/latents [N, C, H, W], in/timesteps [N] (integer or
//	              float), in/encoder_hidden_states [N, L, D]
//	              -> out/noise_pred [N, C, H, W]
//	vae_encode:   in/image [N, 3, H, W] -> out/mean, out/logvar [N, 4, H/8, W/8]
//	vae_decode:   in/latent [N, 4, h, w] (unscaled) -> out/decoded [N, 3, 8h, 8w]
//
// --model is a diffusers folder or a single-file checkpoint (--config and
// --tokenizer complete the latter). Unlike generate, --f16-weights is off
// by default so that the outputs of an fp32 checkpoint match the fp32
// fixtures exactly; a checkpoint stored in fp16 computes the *_fp16w
// references either way. --lora FILE[:SCALE] applies to the unet and
// text_encoder components (the LoRA is read against both models, so both
// are loaded).
func referenceCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reference", stderr)
	mf := addModelFlags(fs, false)
	comp := fs.String("component", "", "text_encoder, unet, vae_encode or vae_decode")
	in := fs.String("in", "", "input safetensors file")
	out := fs.String("out", "", "output safetensors file")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case mf.model == "":
		return usagef("--model is required")
	case *in == "" || *out == "":
		return usagef("--in and --out are required")
	}
	switch *comp {
	case "text_encoder", "unet", "vae_encode", "vae_decode":
	case "":
		return usagef("--component is required (text_encoder, unet, vae_encode, vae_decode)")
	default:
		return usagef("unknown component %q (text_encoder, unet, vae_encode, vae_decode)", *comp)
	}
	comps := map[string]sd.Component{"text_encoder": sd.CompText, "unet": sd.CompUNet, "vae_encode": sd.CompVAE, "vae_decode": sd.CompVAE}[*comp]
	if len(mf.loras) > 0 {
		if comps == sd.CompVAE {
			return usagef("--lora applies to the unet and text_encoder components, not %s", *comp)
		}
		comps = sd.CompText | sd.CompUNet // a LoRA is read against both
	}
	f, err := safetensors.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		return err
	}
	defer e.Close()
	m, err := mf.load(e, comps)
	if err != nil {
		return err
	}
	defer m.Release()
	detach, err := mf.attachLoRA(m, stderr)
	if err != nil {
		return err
	}
	defer detach()
	r := &refRun{e: e, f: f, out: map[string]safetensors.Tensor{}}
	switch *comp {
	case "text_encoder":
		err = r.textEncoder(m)
	case "unet":
		err = r.unet(m)
	case "vae_encode":
		err = r.vaeEncode(m)
	case "vae_decode":
		err = r.vaeDecode(m)
	}
	if err != nil {
		return err
	}
	if err := e.Err(); err != nil {
		return err
	}
	meta := map[string]string{"component": *comp, "model": mf.name(), "input": filepath.Base(*in)}
	if err := safetensors.WriteFile(*out, r.out, meta); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d tensors to %s\n", len(r.out), *out)
	return nil
}

// refRun holds one reference run's input file and collected outputs.
type refRun struct {
	e   *gpu.Engine
	f   *safetensors.File
	out map[string]safetensors.Tensor
	tmp []*gpu.Tensor
}

// input uploads a float tensor of rank len(dims) (any dtype the file
// holds); dims of -1 are free, others must match.
func (r *refRun) input(key string, dims ...int) (*gpu.Tensor, error) {
	info, ok := r.f.Info(key)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", r.f.Path, key)
	}
	if len(info.Shape) != len(dims) {
		return nil, fmt.Errorf("%s: %s has shape %v, want %d dimensions", r.f.Path, key, info.Shape, len(dims))
	}
	for i, d := range dims {
		if info.Shape[i] < 1 || (d >= 0 && info.Shape[i] != d) {
			return nil, fmt.Errorf("%s: %s has shape %v, dimension %d must be %d", r.f.Path, key, info.Shape, i, d)
		}
	}
	v, _, err := r.f.Float32(key)
	if err != nil {
		return nil, err
	}
	t, err := r.e.Upload(gpu.Activations, v, info.Shape...)
	if err != nil {
		return nil, err
	}
	r.tmp = append(r.tmp, t)
	return t, nil
}

// output reads t back under key and releases it.
func (r *refRun) output(key string, t *gpu.Tensor) error {
	defer t.Release()
	v, err := t.Read()
	if err != nil {
		return err
	}
	r.out[key] = safetensors.F32Tensor(v, t.Shape()...)
	return nil
}

func (r *refRun) release() {
	for _, t := range r.tmp {
		t.Release()
	}
}

func (r *refRun) textEncoder(m *sd.Pipeline) error {
	key := "in/input_ids"
	raw, info, err := r.f.Int64(key)
	if err != nil {
		return err
	}
	if len(info.Shape) != 2 || info.Shape[0] < 1 || info.Shape[1] < 1 {
		return fmt.Errorf("%s: %s has shape %v, want [N, L]", r.f.Path, key, info.Shape)
	}
	tm := m.Text
	n, l := info.Shape[0], info.Shape[1]
	ids := make([][]int32, n)
	for i := range ids {
		ids[i] = make([]int32, l)
		for j := range ids[i] {
			v := raw[i*l+j]
			if v < 0 || v > 1<<30 {
				return fmt.Errorf("%s: %s holds token id %d", r.f.Path, key, v)
			}
			ids[i][j] = int32(v)
		}
	}
	var res error
	r.e.NoGrad(func() {
		out, err := tm.Forward(ids)
		if err != nil {
			res = fmt.Errorf("%s: %w", r.f.Path, err)
			return
		}
		for _, kv := range []struct {
			k string
			t *gpu.Tensor
		}{{"out/last_hidden_state", out.Last}, {"out/pooler_output", out.Pooled}, {"out/hidden_states_penultimate", out.Penultimate}, {"out/embeddings", out.Embeddings}} {
			if err := r.output(kv.k, kv.t); err != nil && res == nil {
				res = err
			}
		}
	})
	return res
}

func (r *refRun) unet(m *sd.Pipeline) error {
	defer r.release()
	u := m.UNet
	c := u.Cfg
	x, err := r.input("in/latents", -1, c.InChannels, -1, -1)
	if err != nil {
		return err
	}
	n, h, w := x.Dim(0), x.Dim(2), x.Dim(3)
	if h%8 != 0 || w%8 != 0 {
		return fmt.Errorf("%s: in/latents is %dx%d; the U-Net needs multiples of 8", r.f.Path, h, w)
	}
	t, err := r.input("in/timesteps", n)
	if err != nil {
		return err
	}
	ctx, err := r.input("in/encoder_hidden_states", n, -1, c.CrossAttentionDim)
	if err != nil {
		return err
	}
	var out *gpu.Tensor
	r.e.NoGrad(func() { out = u.Forward(x, t, ctx) })
	return r.output("out/noise_pred", out)
}

func (r *refRun) vaeEncode(m *sd.Pipeline) error {
	defer r.release()
	v := m.VAE
	x, err := r.input("in/image", -1, v.Cfg.InChannels, -1, -1)
	if err != nil {
		return err
	}
	if x.Dim(2)%8 != 0 || x.Dim(3)%8 != 0 {
		return fmt.Errorf("%s: in/image is %dx%d; the VAE needs multiples of 8", r.f.Path, x.Dim(2), x.Dim(3))
	}
	var mean, logvar *gpu.Tensor
	r.e.NoGrad(func() { mean, logvar = v.Encode(x) })
	if err := r.output("out/mean", mean); err != nil {
		logvar.Release()
		return err
	}
	return r.output("out/logvar", logvar)
}

func (r *refRun) vaeDecode(m *sd.Pipeline) error {
	defer r.release()
	v := m.VAE
	z, err := r.input("in/latent", -1, v.Cfg.LatentChannels, -1, -1)
	if err != nil {
		return err
	}
	var out *gpu.Tensor
	r.e.NoGrad(func() { out = v.Decode(z) })
	return r.output("out/decoded", out)
}
