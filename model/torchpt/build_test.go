package torchpt

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// pk writes pickle opcodes by hand, for building test checkpoints
// (including hostile ones) without Python.
type pk struct{ bytes.Buffer }

func (p *pk) op(b ...byte) *pk { p.Write(b); return p }

func (p *pk) str(s string) *pk {
	p.WriteByte(opBinUnicode)
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}

func (p *pk) int(n int64) *pk {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		p.WriteByte(opBinInt)
		binary.Write(&p.Buffer, binary.LittleEndian, int32(n))
		return p
	}
	p.op(opLong1, 8)
	binary.Write(&p.Buffer, binary.LittleEndian, n)
	return p
}

func (p *pk) global(mod, name string) *pk {
	p.WriteByte(opGlobal)
	p.WriteString(mod + "\n" + name + "\n")
	return p
}

func (p *pk) tuple(items ...int64) *pk {
	p.op(opMark)
	for _, v := range items {
		p.int(v)
	}
	return p.op(opTuple)
}

// tview describes one tensor of a hand-built state_dict.
type tview struct {
	name, key, stype string // stype: "FloatStorage", ...
	numel            int64  // storage elements claimed
	offset           int64
	size, stride     []int64
}

// stateDict pickles an OrderedDict of tensor views the way torch.save does.
func stateDict(ts []tview) []byte {
	p := &pk{}
	p.op(opProto, 2).global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opMark)
	for _, t := range ts {
		p.str(t.name).global("torch._utils", "_rebuild_tensor_v2").op(opMark)
		p.op(opMark).str("storage").global("torch", t.stype).str(t.key).str("cpu").int(t.numel).op(opTuple, opBinPersID)
		p.int(t.offset).tuple(t.size...).tuple(t.stride...).op(opNewFalse)
		p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opTuple, opReduce)
	}
	p.op(opSetItems)
	// torch's trailing BUILD of _metadata.
	p.op(opEmptyDict).str("_metadata").global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opSetItem, opBuild)
	return p.op(opStop).Bytes()
}

// zipCheckpoint writes the torch >= 1.6 archive layout with stored records.
func zipCheckpoint(t testing.TB, pkl []byte, storages map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	put := func(name string, b []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	put("archive/data.pkl", pkl)
	for k, b := range storages {
		put("archive/data/"+k, b)
	}
	put("archive/version", []byte("3\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// legacyCheckpoint writes the pre-1.6 stream layout.
func legacyCheckpoint(pkl []byte, keys []string, storages map[string][]byte, elem map[string]int) []byte {
	var b bytes.Buffer
	magic := []byte{0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19} // 0x1950a86a20f9469cfc6c LE
	b.Write([]byte{opProto, 2, opLong1, 10})
	b.Write(magic)
	b.WriteByte(opStop)
	b.Write([]byte{opProto, 2, opBinInt2, 0xe9, 0x03, opStop}) // 1001
	sys := &pk{}
	sys.op(opProto, 2, opEmptyDict).str("little_endian").op(opNewTrue, opSetItem, opStop)
	b.Write(sys.Bytes())
	b.Write(pkl)
	kp := &pk{}
	kp.op(opProto, 2, opEmptyList, opMark)
	for _, k := range keys {
		kp.str(k)
	}
	kp.op(opAppends, opStop)
	b.Write(kp.Bytes())
	for _, k := range keys {
		binary.Write(&b, binary.LittleEndian, int64(len(storages[k])/elem[k]))
		b.Write(storages[k])
	}
	return b.Bytes()
}

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func writeTemp(t testing.TB, name string, b []byte) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
