package dreambooth

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/training"
	"github.com/instructbooth/instructbooth/training/data"
)

// Class images for prior preservation are drawn by the base model from the
// class prompt, once per (base model, class noun, resolution): they live in
// a cache folder named after those three (ClassCacheDir) and are reused by
// every run, with any subject, that shares them. Image i is
// class-NNNNN.png, generated with seed ClassSeed(prompt)+i, so the folder's
// content does not depend on the order or the number of runs that filled
// it, and a generation interrupted after k images resumes at image k.

// ClassCacheDir is the cache folder under root for class images of
// baseModel (its hash), noun and resolution res.
func ClassCacheDir(root, baseModel, noun string, res int) string {
	h := baseModel
	if len(h) > 16 {
		h = h[:16]
	}
	if h == "" {
		h = "unknown-model"
	}
	return filepath.Join(root, fmt.Sprintf("%s-%s-%d", h, slug(noun), res))
}

// slug keeps letters and digits of s, other runs become one '-'.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	if b.Len() == 0 {
		return "class"
	}
	return b.String()
}

// ClassSeed is the seed of class image 0 for prompt (image i uses
// ClassSeed + i): a hash of the prompt, independent of the run's seed.
func ClassSeed(prompt string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(prompt))
	return h.Sum64() >> 32
}

// ClassImagePath is the file of class image i in dir.
func ClassImagePath(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("class-%05d.png", i))
}

// classManifest describes a cache folder (class.json), for people and for
// checking that a folder belongs to the model and class it is used for.
type classManifest struct {
	BaseModel  string  `json:"base_model_sha256"`
	ClassNoun  string  `json:"class_noun"`
	Prompt     string  `json:"prompt"`
	Resolution int     `json:"resolution"`
	SeedBase   uint64  `json:"seed_base"`
	Sampler    string  `json:"sampler"`
	Steps      int     `json:"steps"`
	Guidance   float32 `json:"guidance"`
}

// ClassImages describes the class images a run needs.
type ClassImages struct {
	Dir        string // the cache folder (ClassCacheDir)
	BaseModel  string // hash of the base model, recorded in class.json
	ClassNoun  string
	N          int // images wanted
	Resolution int
	Steps      int // sampling steps (DefaultClassSteps when 0)
}

// Ensure makes sure Dir holds images 0..N-1, generating the missing ones
// with c (the base model, no adapters attached) and reporting progress
// (Step = images present). An existing image that does not decode or has
// the wrong size is generated again. It returns the N paths. A cancelled
// ctx stops between images, keeping those already written.
func (ci ClassImages) Ensure(ctx context.Context, c generate.Components, progress func(training.Status)) ([]string, error) {
	if ci.N < 1 || ci.Resolution < 8 || ci.Resolution%c.SizeMultiple() != 0 {
		return nil, fmt.Errorf("class images: %d images at %d px (sides must be multiples of %d for this model)", ci.N, ci.Resolution, c.SizeMultiple())
	}
	if ci.Steps == 0 {
		ci.Steps = DefaultClassSteps
	}
	if err := os.MkdirAll(ci.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("class images: %w", err)
	}
	prompt := Config{ClassNoun: ci.ClassNoun}.ClassPrompt()
	seed := ClassSeed(prompt)
	man := classManifest{BaseModel: ci.BaseModel, ClassNoun: ci.ClassNoun, Prompt: prompt, Resolution: ci.Resolution,
		SeedBase: seed, Sampler: generate.DefaultSampler, Steps: ci.Steps, Guidance: generate.DefaultGuidance}
	if err := checkManifest(ci.Dir, man); err != nil {
		return nil, err
	}
	paths := make([]string, ci.N)
	var missing []int
	for i := range paths {
		paths[i] = ClassImagePath(ci.Dir, i)
		img, err := data.DecodeFile(paths[i])
		if err != nil || img.Bounds().Dx() != ci.Resolution || img.Bounds().Dy() != ci.Resolution {
			missing = append(missing, i)
		}
	}
	meter := training.NewMeter(ci.N-len(missing), ci.N)
	if progress != nil {
		progress(meter.Update(ci.N-len(missing), nil))
	}
	for k, i := range missing {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := generate.Params{Prompt: prompt, Seed: seed + uint64(i), Steps: ci.Steps, Width: ci.Resolution, Height: ci.Resolution, Count: 1}
		res, err := generate.Generate(ctx, c, p, nil)
		if err != nil {
			return nil, fmt.Errorf("class image %d: %w", i, err)
		}
		im := res.Images[0]
		if err := generate.WritePNG(paths[i], im.RGB, generate.Metadata(im.Params, c.Name)); err != nil {
			return nil, fmt.Errorf("class image %d: %w", i, err)
		}
		if progress != nil {
			progress(meter.Update(ci.N-len(missing)+k+1, nil))
		}
	}
	return paths, nil
}

// checkManifest writes class.json into a new cache folder, or checks that
// an existing one is for the same model, class and resolution.
func checkManifest(dir string, m classManifest) error {
	p := filepath.Join(dir, "class.json")
	if b, err := os.ReadFile(p); err == nil {
		var old classManifest
		if json.Unmarshal(b, &old) == nil {
			if old.BaseModel != m.BaseModel || old.Prompt != m.Prompt || old.Resolution != m.Resolution {
				return fmt.Errorf("class images: %s holds %q at %d px of model %s, not %q at %d px of model %s",
					dir, old.Prompt, old.Resolution, old.BaseModel, m.Prompt, m.Resolution, m.BaseModel)
			}
			return nil
		}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("class images: %w", err)
	}
	return os.Rename(tmp, p)
}
