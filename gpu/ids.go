package gpu

import (
	"encoding/binary"
	"fmt"
)

// IDs is an integer index tensor (token ids, class labels, gather indices):
// u32 values in a GPU storage buffer, plus an immutable host copy. The host
// copy lets ops check indices on the CPU and build the inverse index their
// backward needs (Gather). IDs are not Tensors: they take no part in
// autograd and Scopes do not track them; Release them when done. Ops that
// record a backward keep what it needs, so releasing IDs before Backward is
// safe.
type IDs struct {
	e        *Engine
	buf      *buffer
	shape    []int
	host     []int32
	max      int32 // largest id, -1 when empty
	released bool
}

// NewIDs uploads ids with the given shape (no shape: [len(ids)]). Ids must
// be non-negative; they are stored as u32.
func (e *Engine) NewIDs(ids []int32, shape ...int) *IDs {
	if len(shape) == 0 {
		shape = []int{len(ids)}
	}
	if numel(shape) != len(ids) {
		panic(fmt.Sprintf("gpu: %d ids do not fill shape %v", len(ids), shape))
	}
	max := int32(-1)
	words := make([]uint32, len(ids))
	for i, v := range ids {
		if v < 0 {
			panic(fmt.Sprintf("gpu: negative id %d at %d", v, i))
		}
		if v > max {
			max = v
		}
		words[i] = uint32(v)
	}
	return &IDs{e: e, buf: e.uploadWords(words, Activations), shape: append([]int(nil), shape...),
		host: append([]int32(nil), ids...), max: max}
}

// Shape returns the ids' dimensions (do not modify).
func (d *IDs) Shape() []int { return d.shape }

// Len is the number of ids.
func (d *IDs) Len() int { return len(d.host) }

// Values returns a copy of the ids.
func (d *IDs) Values() []int32 { return append([]int32(nil), d.host...) }

// Release returns the GPU buffer to the pool.
func (d *IDs) Release() {
	if d == nil || d.released {
		return
	}
	d.released = true
	d.e.pool.put(d.buf)
}

func (d *IDs) bind() Binding {
	if d.released {
		panic(fmt.Sprintf("gpu: use of released IDs %v", d.shape))
	}
	return Binding{buf: d.buf, size: max(4, uint64(len(d.host))*4)}
}

// uploadWords copies u32 words into a new pooled buffer. Recorded work is
// submitted first, so the write cannot overtake earlier users of a reused
// buffer.
func (e *Engine) uploadWords(words []uint32, cat Category) *buffer {
	b, err := e.pool.get(uint64(len(words))*4, cat)
	if err != nil {
		panic(err)
	}
	if len(words) == 0 {
		return b
	}
	if err := e.rec.flush(); err != nil {
		return b // the engine's sticky error reports it
	}
	raw := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(raw[4*i:], w)
	}
	if err := e.queue.WriteBuffer(b.b, 0, raw); err != nil {
		e.fail(fmt.Errorf("gpu: uploading %d words: %w", len(words), err))
	}
	return b
}
