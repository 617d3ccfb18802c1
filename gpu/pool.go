package gpu

import (
	"fmt"
	"math/bits"
	"strings"

	"github.com/rajveermalviya/go-webgpu/wgpu"
)

// Category labels what a buffer holds, for memory accounting.
type Category int

const (
	Activations Category = iota
	Weights
	Gradients
	OptimizerState
	Scratch
	numCategories
)

var categoryNames = [...]string{"activations", "weights", "gradients", "optimizer", "scratch"}

func (c Category) String() string { return categoryNames[c] }

// MemStats is the engine's byte accounting. Live counts bytes held by
// tensors (rounded to the pool's size classes), Cached counts freed buffers
// the pool keeps for reuse, and Device = live + cached is what the GPU holds.
type MemStats struct {
	Live, Peak           [numCategories]uint64
	LiveTotal, PeakTotal uint64
	Cached               uint64
	Device, PeakDevice   uint64
	Allocs, Reuses       int
}

func (m MemStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "device %s (peak %s), live %s (peak %s), cached %s;",
		fmtBytes(m.Device), fmtBytes(m.PeakDevice), fmtBytes(m.LiveTotal), fmtBytes(m.PeakTotal), fmtBytes(m.Cached))
	for c := Category(0); c < numCategories; c++ {
		fmt.Fprintf(&b, " %s %s/%s", c, fmtBytes(m.Live[c]), fmtBytes(m.Peak[c]))
	}
	return b.String()
}

func fmtBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// buffer is one pooled GPU storage buffer, shared by a tensor and its views
// through a reference count.
type buffer struct {
	b    *wgpu.Buffer
	size uint64 // allocated bytes (a size class)
	cat  Category
	refs int
}

type pool struct {
	e     *Engine
	free  map[uint64][]*wgpu.Buffer
	stats MemStats
}

func newPool(e *Engine) *pool { return &pool{e: e, free: map[uint64][]*wgpu.Buffer{}} }

// sizeClass rounds n up to 256 bytes, and above 64 KiB to one of four steps
// per power of two, so at most ~19% is wasted and buffers are reused often.
func sizeClass(n uint64) uint64 {
	if n < 256 {
		return 256
	}
	if n <= 64<<10 {
		return (n + 255) &^ 255
	}
	shift := uint(bits.Len64(n-1)) - 3 // quarter of the enclosing power of two
	step := uint64(1) << shift
	return (n + step - 1) / step * step
}

func (p *pool) get(n uint64, cat Category) (*buffer, error) {
	if p.e.lost != nil {
		return nil, p.e.lost
	}
	sz := sizeClass(n)
	if sz > p.e.Limits.MaxBufferSize {
		return nil, fmt.Errorf("gpu: a %s buffer exceeds the device's maxBufferSize %s", fmtBytes(n), fmtBytes(p.e.Limits.MaxBufferSize))
	}
	var wb *wgpu.Buffer
	if l := p.free[sz]; len(l) > 0 {
		wb = l[len(l)-1]
		p.free[sz] = l[:len(l)-1]
		p.stats.Cached -= sz
		p.stats.Reuses++
	} else {
		var err error
		wb, err = p.e.dev.CreateBuffer(&wgpu.BufferDescriptor{
			Size:  sz,
			Usage: wgpu.BufferUsage_Storage | wgpu.BufferUsage_CopySrc | wgpu.BufferUsage_CopyDst,
		})
		if err != nil {
			// Out of memory: drop the cache and try once more.
			p.trim()
			wb, err = p.e.dev.CreateBuffer(&wgpu.BufferDescriptor{
				Size:  sz,
				Usage: wgpu.BufferUsage_Storage | wgpu.BufferUsage_CopySrc | wgpu.BufferUsage_CopyDst,
			})
			if err != nil {
				return nil, fmt.Errorf("gpu: allocating %s for %s: %w (%s)", fmtBytes(sz), cat, err, p.stats)
			}
		}
		p.stats.Device += sz
		p.stats.Allocs++
		if p.stats.Device > p.stats.PeakDevice {
			p.stats.PeakDevice = p.stats.Device
		}
	}
	s := &p.stats
	s.Live[cat] += sz
	s.LiveTotal += sz
	if s.Live[cat] > s.Peak[cat] {
		s.Peak[cat] = s.Live[cat]
	}
	if s.LiveTotal > s.PeakTotal {
		s.PeakTotal = s.LiveTotal
	}
	return &buffer{b: wb, size: sz, cat: cat, refs: 1}, nil
}

// put returns a buffer to the free list. GPU work already recorded that
// reads or writes it stays ordered before any later reuse: all work goes
// through one queue in submission order.
func (p *pool) put(b *buffer) {
	p.stats.Live[b.cat] -= b.size
	p.stats.LiveTotal -= b.size
	p.stats.Cached += b.size
	p.free[b.size] = append(p.free[b.size], b.b)
	b.b = nil
}

// recat moves a live buffer to another accounting category.
func (p *pool) recat(b *buffer, cat Category) {
	if b.cat == cat {
		return
	}
	s := &p.stats
	s.Live[b.cat] -= b.size
	s.Live[cat] += b.size
	b.cat = cat
	if s.Live[cat] > s.Peak[cat] {
		s.Peak[cat] = s.Live[cat]
	}
}

// trim destroys all cached free buffers.
func (p *pool) trim() {
	if p.e.rec != nil {
		_ = p.e.rec.flush()
	}
	for sz, l := range p.free {
		for _, b := range l {
			b.Destroy()
			b.Release()
			p.stats.Device -= sz
		}
	}
	p.free = map[uint64][]*wgpu.Buffer{}
	p.stats.Cached = 0
}

func (p *pool) releaseAll() { p.trim() }

// MemStats reports the current byte accounting.
func (e *Engine) MemStats() MemStats { return e.pool.stats }

// ResetPeaks sets the peak counters to the current values.
func (e *Engine) ResetPeaks() {
	s := &e.pool.stats
	s.Peak = s.Live
	s.PeakTotal = s.LiveTotal
	s.PeakDevice = s.Device
}

// Trim frees the pool's cached buffers back to the driver.
func (e *Engine) Trim() { e.pool.trim() }
