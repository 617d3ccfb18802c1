// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header mapping tensor names to dtype,
// shape and byte offsets (plus an optional "__metadata__" string map), then
// the raw little-endian tensor data.
//
// Open validates the whole header before any tensor is read: the header
// length is bounded by the file size, every dtype is known, every shape's
// byte count matches its offsets, and the tensors tile the data section
// exactly (inside it, in order, without overlap or gaps). A corrupt or
// hostile file gets an error naming the file and the problem, never a panic
// and never a huge allocation. Tensor data is read on demand with ReadAt, so
// a 4 GB checkpoint needs only as much Go heap as the tensor being read.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/x448/float16"
)

// DType is a tensor element type as spelled in the header.
type DType string

const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// Size is the byte size of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, Bool:
		return 1
	}
	return 0
}

// MaxHeader bounds the JSON header (the reference implementation uses 100 MB).
const MaxHeader = 100 << 20

// ErrFormat is wrapped by every validation error.
var ErrFormat = errors.New("invalid safetensors file")

// Info describes one tensor.
type Info struct {
	Name  string
	DType DType
	Shape []int
	// Offset is the absolute byte offset of the data in the file; Size its
	// byte count.
	Offset, Size int64
}

// Numel is the number of elements.
func (i Info) Numel() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// File is an open safetensors file. Methods are safe for concurrent use
// (reads use ReadAt).
type File struct {
	Path     string
	Metadata map[string]string
	r        io.ReaderAt
	closer   io.Closer
	tensors  map[string]Info
	names    []string // in file order
}

// Open opens and validates path.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	sf, err := Parse(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	sf.closer = f
	return sf, nil
}

// Close closes the underlying file.
func (f *File) Close() error {
	if f.closer != nil {
		return f.closer.Close()
	}
	return nil
}

type rawEntry struct {
	DType       *DType   `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

func (f *File) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", f.Path, ErrFormat, fmt.Sprintf(format, args...))
}

// Parse validates the header of a safetensors stream of the given size;
// name labels errors.
func Parse(r io.ReaderAt, size int64, name string) (*File, error) {
	f := &File{Path: name, r: r, tensors: map[string]Info{}}
	var lenBuf [8]byte
	if size < 8 {
		return nil, f.errorf("file is %d bytes, shorter than the 8-byte header length", size)
	}
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading the header length: %w", name, err)
	}
	hl := binary.LittleEndian.Uint64(lenBuf[:])
	if hl > uint64(size-8) {
		return nil, f.errorf("header length %d exceeds the file's %d remaining bytes (truncated file?)", hl, size-8)
	}
	if hl > MaxHeader {
		return nil, f.errorf("header length %d exceeds the %d-byte limit", hl, MaxHeader)
	}
	if hl < 2 {
		return nil, f.errorf("header length %d is too short for a JSON object", hl)
	}
	hdr := make([]byte, hl)
	if _, err := r.ReadAt(hdr, 8); err != nil {
		return nil, fmt.Errorf("%s: reading the header: %w", name, err)
	}
	dataStart := int64(8 + hl)
	dataLen := size - dataStart
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, f.errorf("header is not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, f.errorf("trailing data after the JSON header")
	}
	type span struct {
		name       string
		begin, end int64
	}
	var spans []span
	for key, msg := range raw {
		if key == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, f.errorf("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e rawEntry
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, f.errorf("tensor %q: bad entry: %v", key, err)
		}
		if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
			return nil, f.errorf("tensor %q: dtype, shape and data_offsets are all required", key)
		}
		es := e.DType.Size()
		if es == 0 {
			return nil, f.errorf("tensor %q: unknown dtype %q", key, *e.DType)
		}
		if len(*e.DataOffsets) != 2 {
			return nil, f.errorf("tensor %q: data_offsets must have two entries", key)
		}
		begin, end := (*e.DataOffsets)[0], (*e.DataOffsets)[1]
		if begin < 0 || end < begin || end > dataLen {
			return nil, f.errorf("tensor %q: data_offsets [%d, %d] outside the %d-byte data section", key, begin, end, dataLen)
		}
		n := int64(1)
		shape := make([]int, len(*e.Shape))
		for i, dim := range *e.Shape {
			if dim < 0 {
				return nil, f.errorf("tensor %q: negative dimension %d", key, dim)
			}
			if dim > 0 && n > math.MaxInt64/8/dim {
				return nil, f.errorf("tensor %q: shape %v overflows", key, *e.Shape)
			}
			n *= dim
			shape[i] = int(dim)
		}
		if n*int64(es) != end-begin {
			return nil, f.errorf("tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", key, *e.Shape, *e.DType, n*int64(es), end-begin)
		}
		f.tensors[key] = Info{Name: key, DType: *e.DType, Shape: shape, Offset: dataStart + begin, Size: end - begin}
		spans = append(spans, span{key, begin, end})
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	pos := int64(0)
	for _, s := range spans {
		if s.begin < pos {
			return nil, f.errorf("tensor %q overlaps the tensor before it", s.name)
		}
		if s.begin > pos {
			return nil, f.errorf("gap of %d bytes before tensor %q", s.begin-pos, s.name)
		}
		pos = s.end
		f.names = append(f.names, s.name)
	}
	if pos != dataLen {
		return nil, f.errorf("data section is %d bytes but the tensors cover %d (truncated or padded file)", dataLen, pos)
	}
	return f, nil
}

// Names lists the tensors in file order.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Info returns a tensor's description.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.tensors[name]
	return i, ok
}

// Raw reads a tensor's bytes.
func (f *File) Raw(name string) ([]byte, Info, error) {
	info, ok := f.tensors[name]
	if !ok {
		return nil, info, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	b := make([]byte, info.Size)
	if _, err := f.r.ReadAt(b, info.Offset); err != nil {
		return nil, info, fmt.Errorf("%s: reading tensor %q: %w", f.Path, name, err)
	}
	return b, info, nil
}

// Float32 reads a tensor converted to float32 (from any float or integer
// dtype).
func (f *File) Float32(name string) ([]float32, Info, error) {
	b, info, err := f.Raw(name)
	if err != nil {
		return nil, info, err
	}
	return ToFloat32(b, info.DType), info, nil
}

// Int64 reads an integer tensor (I64, I32, I16, I8, U8, BOOL) as int64.
func (f *File) Int64(name string) ([]int64, Info, error) {
	b, info, err := f.Raw(name)
	if err != nil {
		return nil, info, err
	}
	n := info.Numel()
	out := make([]int64, n)
	le := binary.LittleEndian
	for i := range out {
		switch info.DType {
		case I64:
			out[i] = int64(le.Uint64(b[8*i:]))
		case I32:
			out[i] = int64(int32(le.Uint32(b[4*i:])))
		case I16:
			out[i] = int64(int16(le.Uint16(b[2*i:])))
		case I8:
			out[i] = int64(int8(b[i]))
		case U8, Bool:
			out[i] = int64(b[i])
		default:
			return nil, info, fmt.Errorf("%s: tensor %q is %s, not an integer type", f.Path, name, info.DType)
		}
	}
	return out, info, nil
}

// ToFloat32 converts little-endian raw data of dtype d.
func ToFloat32(b []byte, d DType) []float32 {
	le := binary.LittleEndian
	n := len(b) / d.Size()
	out := make([]float32, n)
	for i := range out {
		switch d {
		case F32:
			out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		case F16:
			out[i] = float16.Frombits(le.Uint16(b[2*i:])).Float32()
		case BF16:
			out[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		case F64:
			out[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		case I64:
			out[i] = float32(int64(le.Uint64(b[8*i:])))
		case I32:
			out[i] = float32(int32(le.Uint32(b[4*i:])))
		case I16:
			out[i] = float32(int16(le.Uint16(b[2*i:])))
		case I8:
			out[i] = float32(int8(b[i]))
		case U8, Bool:
			out[i] = float32(b[i])
		}
	}
	return out
}
