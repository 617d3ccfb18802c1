package sd

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/x448/float16"
)

// SD15UNetConfig is Stable Diffusion 1.5's U-Net: block_out_channels
// 320/640/1280/1280, two resnets per level, attention on the first three
// levels, cross-attention dim 768, 8 heads, time embedding 1280.
func SD15UNetConfig() UNetConfig {
	c := defaultUNetConfig()
	c.InChannels, c.OutChannels = 4, 4
	c.BlockOutChannels = []int{320, 640, 1280, 1280}
	c.LayersPerBlock = 2
	c.CrossAttentionDim = 768
	c.DownHasAttn = []bool{true, true, true, false}
	c.TransformerDepth = 1
	c.TimeEmbedDim = 1280
	c.Heads = []int{8, 8, 8, 8}
	return c
}

// SD15VAEConfig is Stable Diffusion 1.x's AutoencoderKL.
func SD15VAEConfig() VAEConfig {
	return VAEConfig{InChannels: 3, LatentChannels: 4, BlockOutChannels: []int{128, 256, 512, 512}, LayersPerBlock: 2, Groups: 32, Eps: 1e-6}
}

// CLIPLTextConfig is CLIP ViT-L/14's text encoder, SD 1.x's: width 768, 12
// layers, 12 heads, MLP 3072, vocabulary 49408, 77 positions, quick-GELU.
func CLIPLTextConfig() clip.TextConfig {
	return clip.TextConfig{HiddenSize: 768, Heads: 12, Layers: 12, Intermediate: 3072, HiddenAct: "quick_gelu",
		LayerNormEps: 1e-5, MaxPositions: 77, VocabSize: 49408}
}

// RandomCheckpoint returns a safetensors file holding random float16
// weights for every key of s, generated on demand as the file is read: no
// storage and no Go heap beyond the tensor being read, so the full-size SD
// 1.5 model (1.7 GB) costs nothing until it is uploaded. The values follow
// the sd-tiny fixture's recipe (uniform with unit variance): norm weights 1
// + 0.1 r, biases 0.1 r, other weights r / sqrt(fan_in), so activations
// stay O(1). The same seed gives the same file.
func RandomCheckpoint(s Schema, seed uint64, name string) *safetensors.File {
	r := newRandomFile(s, seed)
	f, err := safetensors.Parse(r, r.size, name)
	if err != nil {
		panic(fmt.Sprintf("sd: random checkpoint: %v", err))
	}
	return f
}

func newRandomFile(s Schema, seed uint64) *randomFile {
	r := &randomFile{seed: seed, tables: map[[2]float32][]uint16{}}
	hdr := map[string]any{}
	off := int64(0)
	for i, k := range s.Keys() {
		shape := s[k]
		n := int64(1)
		for _, d := range shape {
			n *= int64(d)
		}
		hdr[k] = map[string]any{"dtype": "F16", "shape": shape, "data_offsets": []int64{off, off + 2*n}}
		shift, scale := randomInit(k, shape)
		key := [2]float32{shift, scale}
		if r.tables[key] == nil {
			r.tables[key] = randomTable(shift, scale)
		}
		r.spans = append(r.spans, randomSpan{begin: off, end: off + 2*n, index: uint64(i), table: r.tables[key]})
		off += 2 * n
	}
	js, err := json.Marshal(hdr) // map keys sorted: the order of the offsets
	if err != nil {
		panic(err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	r.header = binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	r.header = append(r.header, js...)
	for i := range r.spans {
		r.spans[i].begin += int64(len(r.header))
		r.spans[i].end += int64(len(r.header))
	}
	r.size = int64(len(r.header)) + off
	return r
}

// randomInit gives a parameter's mean and spread.
func randomInit(key string, shape []int) (shift, scale float32) {
	switch {
	case strings.HasSuffix(key, ".bias"):
		return 0, 0.1
	case len(shape) == 1: // norm weights
		return 1, 0.1
	case strings.Contains(key, "embedding.weight") && !strings.Contains(key, "time_embedding"):
		return 0, 0.5
	}
	fan := 1
	for _, d := range shape[1:] {
		fan *= d
	}
	return 0, float32(1 / math.Sqrt(float64(fan)))
}

// randomTable holds 65536 binary16 values shift + scale u with u evenly
// spread over [-sqrt 3, sqrt 3] (unit variance); a hash picks among them.
func randomTable(shift, scale float32) []uint16 {
	t := make([]uint16, 1<<16)
	for k := range t {
		u := ((float64(k)+0.5)/(1<<16)*2 - 1) * math.Sqrt(3)
		t[k] = float16.Fromfloat32(shift + scale*float32(u)).Bits()
	}
	return t
}

type randomSpan struct {
	begin, end int64 // absolute byte range
	index      uint64
	table      []uint16
}

type randomFile struct {
	header []byte
	spans  []randomSpan
	tables map[[2]float32][]uint16
	seed   uint64
	size   int64
}

// splitmix64 is a fast, well-mixed 64-bit hash.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// ReadAt synthesises the bytes at off. Each hash of (seed, tensor, group)
// gives four values, one per 16 bits.
func (r *randomFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("sd: random checkpoint: negative offset")
	}
	n := 0
	for n < len(p) {
		o := off + int64(n)
		if o >= r.size {
			return n, io.EOF
		}
		if o < int64(len(r.header)) {
			n += copy(p[n:], r.header[o:])
			continue
		}
		i := sort.Search(len(r.spans), func(i int) bool { return r.spans[i].end > o })
		s := &r.spans[i]
		base := (r.seed+1)*0x100000001b3 ^ s.index<<40
		end := min(s.end, off+int64(len(p)))
		for o < end {
			rel := o - s.begin
			if rel%8 == 0 && o+8 <= end { // a whole group of four values
				h := splitmix64(base ^ uint64(rel/8))
				q := p[n : n+8]
				binary.LittleEndian.PutUint16(q[0:], s.table[h&0xffff])
				binary.LittleEndian.PutUint16(q[2:], s.table[h>>16&0xffff])
				binary.LittleEndian.PutUint16(q[4:], s.table[h>>32&0xffff])
				binary.LittleEndian.PutUint16(q[6:], s.table[h>>48])
				n += 8
				o += 8
				continue
			}
			h := splitmix64(base ^ uint64(rel/8))
			v := s.table[h>>(16*uint(rel%8/2))&0xffff]
			p[n] = byte(v >> (8 * (rel % 2)))
			n++
			o++
		}
	}
	return n, nil
}
