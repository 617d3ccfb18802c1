package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/model/safetensors"

	"github.com/instructbooth/instructbooth/internal/testenv"
)

// fixtures returns ../shared/fixtures beside the repository.
func fixtures(t testing.TB) string {
	t.Helper()
	return testenv.Fixtures(t)
}

func TestWrite_roundTrip(t *testing.T) {
	ts := map[string]safetensors.Tensor{
		"b.weight": safetensors.F32Tensor([]float32{1, -2.5, 3e-8, float32(math.Inf(1))}, 2, 2),
		"a.half":   safetensors.F16Tensor([]float32{0.5, 65504, -1}, 3),
		"scalar":   safetensors.F32Tensor([]float32{2}),
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, map[string]string{"rank": "4"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "mem")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Names(), ","); got != "a.half,b.weight,scalar" {
		t.Errorf("names %s", got)
	}
	if f.Metadata["rank"] != "4" {
		t.Errorf("metadata %v", f.Metadata)
	}
	v, info, err := f.Float32("b.weight")
	if err != nil || info.Shape[0] != 2 || v[1] != -2.5 || v[2] != 3e-8 || !math.IsInf(float64(v[3]), 1) {
		t.Errorf("b.weight = %v %v %v", v, info, err)
	}
	h, _, _ := f.Float32("a.half")
	if h[0] != 0.5 || h[1] != 65504 || h[2] != -1 {
		t.Errorf("a.half = %v", h)
	}
	s, info, _ := f.Float32("scalar")
	if len(info.Shape) != 0 || s[0] != 2 {
		t.Errorf("scalar = %v %v", s, info)
	}
}

// TestParse_rejectsHostile feeds malformed headers; each must give an error
// that names the file, and none may panic.
func TestParse_rejectsHostile(t *testing.T) {
	mk := func(hdr string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
		b = append(b, hdr...)
		return append(b, make([]byte, data)...)
	}
	cases := map[string][]byte{
		"short file":      {1, 2, 3},
		"huge header len": binary.LittleEndian.AppendUint64(nil, 1<<62),
		"not json":        mk("nonsense", 0),
		"unknown dtype":   mk(`{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}`, 1),
		"size mismatch":   mk(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8),
		"past the end":    mk(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8),
		"negative dim":    mk(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, 0),
		"overflow":        mk(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, 0),
		"overlap":         mk(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		"gap":             mk(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		"trailing bytes":  mk(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 12),
		"missing field":   mk(`{"a":{"dtype":"F32","shape":[1]}}`, 4),
		"extra field":     mk(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4),
		"bad metadata":    mk(`{"__metadata__":{"a":1}}`, 0),
		"three offsets":   mk(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 4),
		"reversed":        mk(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4),
	}
	for name, b := range cases {
		_, err := safetensors.Parse(bytes.NewReader(b), int64(len(b)), "evil.safetensors")
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), "evil.safetensors") {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
		if name != "short file" && !errors.Is(err, safetensors.ErrFormat) {
			t.Errorf("%s: error is not ErrFormat: %v", name, err)
		}
	}
}

// TestOpen_fixtures reads the sd-tiny U-Net in fp32 and fp16: every tensor
// of the fp16 file equals the fp32 one rounded to half precision.
func TestOpen_fixtures(t *testing.T) {
	dir := filepath.Join(fixtures(t), "sd-tiny", "diffusers", "unet")
	f32, err := safetensors.Open(filepath.Join(dir, "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f32.Close()
	f16, err := safetensors.Open(filepath.Join(dir, "diffusion_pytorch_model.fp16.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f16.Close()
	if len(f32.Names()) != len(f16.Names()) || len(f32.Names()) < 100 {
		t.Fatalf("%d fp32 tensors, %d fp16", len(f32.Names()), len(f16.Names()))
	}
	info, ok := f32.Info("conv_in.weight")
	if !ok || info.DType != safetensors.F32 || len(info.Shape) != 4 || info.Shape[0] != 32 {
		t.Fatalf("conv_in.weight: %+v", info)
	}
	for _, n := range f32.Names() {
		a, _, err := f32.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		b, bi, err := f16.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		if bi.DType != safetensors.F16 {
			t.Fatalf("%s is %s in the fp16 file", n, bi.DType)
		}
		for i := range a {
			if d := math.Abs(float64(a[i] - b[i])); d > 1e-3*math.Abs(float64(a[i]))+1e-7 {
				t.Fatalf("%s[%d]: fp32 %g, fp16 %g", n, i, a[i], b[i])
			}
		}
	}
	// Integer reference tensors (token ids are int64).
	ref, err := safetensors.Open(filepath.Join(fixtures(t), "sd-tiny", "ref", "tokenizer.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for _, n := range ref.Names() {
		info, _ := ref.Info(n)
		if info.DType == safetensors.I64 {
			ids, _, err := ref.Int64(n)
			if err != nil || len(ids)%77 != 0 || ids[0] != 49406 {
				t.Errorf("%s: %d ids starting %v: %v", n, len(ids), ids[:1], err)
			}
			return
		}
	}
	t.Error("no int64 tensor in the tokenizer reference")
}

// FuzzParse: no input may panic the parser or make it allocate beyond the
// input's size.
func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	safetensors.Write(&buf, map[string]safetensors.Tensor{"x": safetensors.F32Tensor([]float32{1, 2}, 2), "y": safetensors.F16Tensor([]float32{1}, 1)}, map[string]string{"k": "v"})
	f.Add(buf.Bytes())
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '})
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := safetensors.Parse(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			return
		}
		for _, n := range sf.Names() {
			if _, _, err := sf.Raw(n); err != nil {
				t.Fatalf("validated tensor %q unreadable: %v", n, err)
			}
		}
	})
}
