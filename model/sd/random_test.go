package sd

import (
	"bytes"
	"math"
	"testing"

	"github.com/instructbooth/instructbooth/model/safetensors"
)

// TestRandomCheckpoint: the synthesised file parses, reads the same bytes
// whatever the read boundaries, repeats with its seed, and has the
// intended spreads.
func TestRandomCheckpoint(t *testing.T) {
	u, _, _ := tinyConfigs()
	s := UNetSchema(u)
	rf := newRandomFile(s, 7)
	f, err := safetensors.Parse(rf, rf.size, "random.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Names()) != len(s) {
		t.Fatalf("%d tensors, want %d", len(f.Names()), len(s))
	}
	k := "down_blocks.1.resnets.0.conv1.weight" // [64, 32, 3, 3]
	whole, info, err := f.Raw(k)
	if err != nil {
		t.Fatal(err)
	}
	// Odd-sized reads at odd offsets.
	var pieces []byte
	for off := 0; off < len(whole); off += 13 {
		b := make([]byte, min(13, len(whole)-off))
		if _, err := rf.ReadAt(b, info.Offset+int64(off)); err != nil {
			t.Fatal(err)
		}
		pieces = append(pieces, b...)
	}
	if !bytes.Equal(pieces, whole) {
		t.Fatal("reads in pieces differ from the whole read")
	}
	again, _, _ := RandomCheckpoint(s, 7, "again").Raw(k)
	other, _, _ := RandomCheckpoint(s, 8, "other").Raw(k)
	if !bytes.Equal(again, whole) || bytes.Equal(other, whole) {
		t.Error("the seed does not determine the data")
	}
	for key, want := range map[string][2]float64{
		k:                                      {0, 1 / math.Sqrt(32*9)},
		"down_blocks.1.resnets.0.norm1.weight": {1, 0.1},
		"conv_in.bias":                         {0, 0.1},
	} {
		v, _, err := f.Float32(key)
		if err != nil {
			t.Fatal(err)
		}
		mean, sq := 0.0, 0.0
		for _, x := range v {
			mean += float64(x)
		}
		mean /= float64(len(v))
		for _, x := range v {
			sq += (float64(x) - mean) * (float64(x) - mean)
		}
		std := math.Sqrt(sq / float64(len(v)))
		if math.Abs(mean-want[0]) > 4*want[1]/math.Sqrt(float64(len(v)))+1e-3 || math.Abs(std-want[1]) > 0.35*want[1] {
			t.Errorf("%s: mean %.4g std %.4g, want %.4g and %.4g", key, mean, std, want[0], want[1])
		}
	}
}
