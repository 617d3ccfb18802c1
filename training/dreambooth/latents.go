package dreambooth

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training/data"
)

// posterior is the VAE posterior of one image crop (one flip): mean and
// standard deviation, [C, h, w] each, unscaled.
type posterior struct {
	mean, std []float32
}

// latentSet holds the posteriors of a set's images, both flips, on the
// CPU. A training step draws z = ScalingFactor (mean + std n) with n from
// the step's stream, which is what diffusers' latent_dist.sample() does
// per step, without encoding every step.
type latentSet struct {
	post    [][2]posterior // [image][flip]
	c, h, w int
}

// encodeSet encodes both flips of every image of set with v. cached, when
// not nil, is consulted and filled by image hash.
func encodeSet(v *sd.VAE, set *data.Set, cached *latentCache) (*latentSet, error) {
	res := set.Res
	f := v.Factor()
	ls := &latentSet{c: v.Cfg.LatentChannels, h: res / f, w: res / f}
	e := v.W.E
	for i, im := range set.Images {
		var pair [2]posterior
		for f := 0; f < 2; f++ {
			if p, ok := cached.get(im.SHA256, f); ok && len(p.mean) == ls.c*ls.h*ls.w {
				pair[f] = p
				continue
			}
			var mean, logvar []float32
			var err error
			e.NoGrad(func() {
				s := e.Scope()
				defer s.Close()
				x := e.FromSlice(set.Tensor(i, f == 1), 1, 3, res, res)
				m, lv := v.Encode(x) // [1, C, h, w]
				if mean, err = m.Read(); err != nil {
					return
				}
				logvar, err = lv.Read()
			})
			if err != nil {
				return nil, fmt.Errorf("encoding %s: %w", im.Path, err)
			}
			std := make([]float32, len(logvar))
			for k, l := range logvar {
				std[k] = float32(math.Exp(0.5 * float64(l)))
			}
			pair[f] = posterior{mean: mean, std: std}
			cached.put(im.SHA256, f, pair[f])
		}
		ls.post = append(ls.post, pair)
	}
	return ls, nil
}

// sample writes ScalingFactor (mean + std noise) of image i, flip f, into
// out ([C, h, w]); noise has the same length.
func (ls *latentSet) sample(i int, flip bool, noise, out []float32, scale float32) {
	f := 0
	if flip {
		f = 1
	}
	p := ls.post[i][f]
	for k := range out {
		out[k] = scale * (p.mean[k] + p.std[k]*noise[k])
	}
}

// latentCache stores the posteriors of class images in their cache folder
// (latents.safetensors: "<sha256>/<flip>/mean" and ".../std"), so that a
// resumed or later run does not encode them again. A nil cache does
// nothing.
type latentCache struct {
	path  string
	m     map[string]posterior
	dirty bool
}

func cacheKey(hash string, flip int) string { return hash + "/" + strconv.Itoa(flip) }

// openLatentCache reads path if it exists and was written for
// resolution res; a damaged file is ignored (and rewritten later).
func openLatentCache(path string, res int) *latentCache {
	c := &latentCache{path: path, m: map[string]posterior{}}
	f, err := safetensors.Open(path)
	if err != nil {
		return c
	}
	defer f.Close()
	if f.Metadata["resolution"] != strconv.Itoa(res) {
		return c
	}
	for _, n := range f.Names() {
		key, ok := strings.CutSuffix(n, "/mean")
		if !ok {
			continue
		}
		mean, _, err1 := f.Float32(n)
		std, _, err2 := f.Float32(key + "/std")
		if err1 == nil && err2 == nil && len(mean) == len(std) {
			c.m[key] = posterior{mean: mean, std: std}
		}
	}
	return c
}

func (c *latentCache) get(hash string, flip int) (posterior, bool) {
	if c == nil {
		return posterior{}, false
	}
	p, ok := c.m[cacheKey(hash, flip)]
	return p, ok
}

func (c *latentCache) put(hash string, flip int, p posterior) {
	if c == nil {
		return
	}
	c.m[cacheKey(hash, flip)] = p
	c.dirty = true
}

// save writes the cache when something was added.
func (c *latentCache) save(res, hw, ch int) error {
	if c == nil || !c.dirty {
		return nil
	}
	ts := map[string]safetensors.Tensor{}
	for k, p := range c.m {
		ts[k+"/mean"] = safetensors.F32Tensor(p.mean, ch, hw, hw)
		ts[k+"/std"] = safetensors.F32Tensor(p.std, ch, hw, hw)
	}
	if err := safetensors.WriteFile(c.path, ts, map[string]string{"resolution": strconv.Itoa(res)}); err != nil {
		os.Remove(c.path)
		return err
	}
	c.dirty = false
	return nil
}

// upload puts vals [shape] on e as an activation.
func upload(e *gpu.Engine, vals []float32, shape ...int) (*gpu.Tensor, error) {
	return e.Upload(gpu.Activations, vals, shape...)
}
