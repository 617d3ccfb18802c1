package lora

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// Metadata keys. Rank and alpha use kohya's names, which Save fills in
// itself; the others describe a personalised model.
const (
	KeyRank          = "ss_network_dim"   // adapter rank (when all adapters share it)
	KeyAlpha         = "ss_network_alpha" // alpha = scale * rank (when all adapters share it)
	KeySteps         = "ss_steps"         // training steps taken
	KeyBaseModelHash = "ib_base_model_sha256"
	KeyIdentifier    = "ib_identifier" // the rare token, e.g. "sks"
	KeyClassNoun     = "ib_class_noun" // e.g. "dog"
	KeyDescription   = "ib_description"
)

// Meta is the descriptive metadata of a trained LoRA.
type Meta struct {
	BaseModelHash string // ModelHash of the base checkpoint
	Identifier    string
	ClassNoun     string
	Description   string
	Steps         int
}

// Map returns the non-empty fields under their metadata keys.
func (m Meta) Map() map[string]string {
	out := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	set(KeyBaseModelHash, m.BaseModelHash)
	set(KeyIdentifier, m.Identifier)
	set(KeyClassNoun, m.ClassNoun)
	set(KeyDescription, m.Description)
	if m.Steps > 0 {
		out[KeySteps] = strconv.Itoa(m.Steps)
	}
	return out
}

// ParseMeta reads the fields of Meta from a file's metadata (missing or
// malformed fields stay zero).
func ParseMeta(md map[string]string) Meta {
	steps, _ := strconv.Atoi(md[KeySteps])
	return Meta{
		BaseModelHash: md[KeyBaseModelHash],
		Identifier:    md[KeyIdentifier],
		ClassNoun:     md[KeyClassNoun],
		Description:   md[KeyDescription],
		Steps:         steps,
	}
}

// ModelHash is the hex SHA-256 of the file at path (for KeyBaseModelHash).
func ModelHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Save writes s to path (atomically) in layout f as float32, with meta plus
// the rank and alpha (KeyRank, KeyAlpha) when every adapter shares them.
//
// kohya keeps each adapter's scale as alpha = scale * rank. The diffusers
// and PEFT layouts have no per-layer scale that their loaders read, so
// there the scale is folded into Up (Up' = scale * Up, scale 1): the file
// computes the same function, and a scale-1 set round-trips exactly.
func Save(path string, s Set, f Format, meta map[string]string) error {
	if f != Kohya && f != Diffusers && f != PEFT {
		return fmt.Errorf("%s: lora: unknown format %q", path, f)
	}
	tensors := map[string]safetensors.Tensor{}
	md := map[string]string{}
	for k, v := range meta {
		md[k] = v
	}
	rank, alpha, uniform := -1, float32(0), true
	for _, c := range []struct {
		m    nn.Adapters
		comp component
	}{{s.UNet, unetComp}, {s.TextEncoder, teComp}} {
		seen := map[string]string{}
		for _, mod := range sortedKeys(c.m) {
			a := c.m[mod]
			if a == nil || a.Down == nil || a.Up == nil {
				return fmt.Errorf("%s: lora: adapter %q lacks a tensor", path, mod)
			}
			r := a.Down.Dim(0)
			if len(a.Up.Shape()) < 2 || a.Up.Dim(1) != r {
				return fmt.Errorf("%s: lora: adapter %q: down %v and up %v disagree on the rank", path, mod, a.Down.Shape(), a.Up.Shape())
			}
			dv, err := a.Down.Read()
			if err != nil {
				return fmt.Errorf("%s: lora: reading %q: %w", path, mod, err)
			}
			uv, err := a.Up.Read()
			if err != nil {
				return fmt.Errorf("%s: lora: reading %q: %w", path, mod, err)
			}
			scale := a.Scale
			if f != Kohya && scale != 1 {
				for i := range uv {
					uv[i] *= scale
				}
				scale = 1
			}
			al := float32(float64(scale) * float64(r))
			if rank < 0 {
				rank, alpha = r, al
			} else if rank != r || alpha != al {
				uniform = false
			}
			down := safetensors.F32Tensor(dv, a.Down.Shape()...)
			up := safetensors.F32Tensor(uv, a.Up.Shape()...)
			switch f {
			case Kohya:
				name := strings.ReplaceAll(mod, ".", "_")
				if prev, dup := seen[name]; dup {
					return fmt.Errorf("%s: lora: modules %q and %q have the same kohya name %q", path, prev, mod, name)
				}
				seen[name] = mod
				pre := "lora_unet_"
				if c.comp == teComp {
					pre = "lora_te_"
				}
				tensors[pre+name+".lora_down.weight"] = down
				tensors[pre+name+".lora_up.weight"] = up
				tensors[pre+name+".alpha"] = safetensors.F32Tensor([]float32{al})
			case Diffusers:
				pre, mid := "unet.", ".lora."
				if c.comp == teComp {
					pre, mid = "text_encoder.", ".lora_linear_layer."
				}
				tensors[pre+mod+mid+"down.weight"] = down
				tensors[pre+mod+mid+"up.weight"] = up
			case PEFT:
				pre := "unet."
				if c.comp == teComp {
					pre = "text_encoder."
				}
				tensors[pre+mod+".lora_A.weight"] = down
				tensors[pre+mod+".lora_B.weight"] = up
			}
		}
	}
	if len(tensors) == 0 {
		return fmt.Errorf("%s: lora: no adapters to save", path)
	}
	if uniform {
		md[KeyRank] = strconv.Itoa(rank)
		md[KeyAlpha] = strconv.FormatFloat(float64(alpha), 'g', -1, 32)
	}
	if f != Kohya {
		md["format"] = "pt" // as torch-written safetensors files say
	}
	return safetensors.WriteFile(path, tensors, md)
}
