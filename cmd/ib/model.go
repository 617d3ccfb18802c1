package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
)

// modelFlags are the flags that choose and load a checkpoint, shared by
// generate and reference.
type modelFlags struct {
	model, config, tokenizer string
	fp16, f16Weights         bool
	loras                    loraList
}

// addModelFlags registers --model, --config, --tokenizer, --fp16,
// --f16-weights (default f16Weights) and --lora on fs.
func addModelFlags(fs *flag.FlagSet, f16Weights bool) *modelFlags {
	m := &modelFlags{}
	fs.StringVar(&m.model, "model", "", "diffusers folder or single-file checkpoint (.safetensors)")
	fs.StringVar(&m.config, "config", "", "diffusers-style folder whose configs and tokenizer complete a single-file checkpoint")
	fs.StringVar(&m.tokenizer, "tokenizer", "", "tokenizer folder (vocab.json + merges.txt) or bpe_simple_vocab_16e6.txt.gz, for single-file checkpoints")
	fs.BoolVar(&m.fp16, "fp16", false, "read a diffusers folder's *.fp16.safetensors variants where present")
	fs.BoolVar(&m.f16Weights, "f16-weights", f16Weights, "keep the weights as binary16 on the GPU (half the memory; math stays f32)")
	fs.Var(&m.loras, "lora", "LoRA file applied at its own scale times SCALE (FILE[:SCALE], default 1); repeat to apply several at once")
	return m
}

// load reads the components comps of --model onto e.
func (m *modelFlags) load(e *gpu.Engine, comps sd.Component) (*sd.Pipeline, error) {
	return sd.Load(e, m.model, sd.LoadOptions{
		PreferFP16:    m.fp16,
		F16Weights:    m.f16Weights,
		ConfigDir:     m.config,
		TokenizerPath: m.tokenizer,
		Components:    comps,
	})
}

// name identifies the model in outputs' metadata: the folder or file name.
func (m *modelFlags) name() string { return filepath.Base(filepath.Clean(m.model)) }

// components are what generation needs, from a fully loaded pipeline.
func components(p *sd.Pipeline, name string) generate.Components {
	return generate.FromPipeline(p, name)
}

// attachLoRA loads every --lora against the pipeline's U-Net and text
// encoder (either may be nil, not both), multiplies each file's adapter
// scales by its SCALE and attaches them all at once (a layer adapted by
// several files gets the sum of their terms). The returned release
// detaches and frees the adapters; it is never nil.
func (m *modelFlags) attachLoRA(p *sd.Pipeline, stderr io.Writer) (release func(), err error) {
	if len(m.loras) == 0 {
		return func() {}, nil
	}
	var t lora.Targets
	if p.UNet != nil {
		t.UNet = p.UNet.W
	}
	if p.Text != nil {
		t.TextEncoder = p.Text.W.Root() // the root holding "text_model.*"
	}
	var sets []*lora.Set
	free := func() {
		for _, s := range sets {
			s.Release()
		}
	}
	for _, lf := range m.loras {
		l, err := lora.Load(lf.path, t)
		if err != nil {
			free()
			return func() {}, err
		}
		l.MulScale(lf.scale)
		sets = append(sets, &l.Set)
		fmt.Fprintf(stderr, "lora %s (%s): %d U-Net and %d text-encoder layers, scale x%g\n",
			lf.path, l.Format, len(l.UNet), len(l.TextEncoder), lf.scale)
		if len(l.Skipped) > 0 {
			fmt.Fprintf(stderr, "lora %s: %d text-encoder layers not applied (no text encoder loaded)\n", lf.path, len(l.Skipped))
		}
	}
	lora.AttachAll(t, sets...)
	return func() {
		lora.Detach(t)
		free()
	}, nil
}

// loraList is the repeatable --lora flag.
type loraList []loraFlag

func (l *loraList) String() string {
	var parts []string
	for _, f := range *l {
		parts = append(parts, f.String())
	}
	return strings.Join(parts, ",")
}

func (l *loraList) Set(v string) error {
	var f loraFlag
	if err := f.Set(v); err != nil {
		return err
	}
	*l = append(*l, f)
	return nil
}

// loraFlag is --lora FILE[:SCALE]. SCALE multiplies the file's own scale
// (alpha/rank); a suffix after the last ':' that is not a number belongs
// to the file name.
type loraFlag struct {
	path  string
	scale float32
}

func (f *loraFlag) String() string {
	if f.path == "" {
		return ""
	}
	return fmt.Sprintf("%s:%g", f.path, f.scale)
}

func (f *loraFlag) Set(v string) error {
	path, scale := v, float32(1)
	if i := strings.LastIndexByte(v, ':'); i >= 0 {
		if s, err := strconv.ParseFloat(v[i+1:], 32); err == nil {
			path, scale = v[:i], float32(s)
		}
	}
	if path == "" {
		return fmt.Errorf("%q: want FILE[:SCALE]", v)
	}
	f.path, f.scale = path, scale
	return nil
}
