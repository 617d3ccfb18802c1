package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/x448/float16"
)

// Tensor is an in-memory tensor to write.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte // little-endian, len = numel * DType.Size()
}

// F32Tensor wraps float32 values.
func F32Tensor(v []float32, shape ...int) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{DType: F32, Shape: shape, Data: b}
}

// F16Tensor rounds float32 values to float16.
func F16Tensor(v []float32, shape ...int) Tensor {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], float16.Fromfloat32(x).Bits())
	}
	return Tensor{DType: F16, Shape: shape, Data: b}
}

// Write encodes tensors (sorted by name, as the reference writer does) with
// metadata to w.
func Write(w io.Writer, tensors map[string]Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	hdr := map[string]any{}
	if len(metadata) > 0 {
		hdr["__metadata__"] = metadata
	}
	off := int64(0)
	for _, n := range names {
		t := tensors[n]
		numel := 1
		for _, d := range t.Shape {
			numel *= d
		}
		if t.DType.Size() == 0 || numel*t.DType.Size() != len(t.Data) {
			return fmt.Errorf("safetensors: tensor %q: %d bytes for shape %v of %s", n, len(t.Data), t.Shape, t.DType)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		hdr[n] = map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": []int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	bw := bufio.NewWriter(w)
	binary.Write(bw, binary.LittleEndian, uint64(len(js)))
	bw.Write(js)
	for _, n := range names {
		if _, err := bw.Write(tensors[n].Data); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteFile writes atomically: to a temporary file in the same folder, then
// renamed over path, so a crash never leaves a half-written file.
func WriteFile(path string, tensors map[string]Tensor, metadata map[string]string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.safetensors")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, tensors, metadata); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
