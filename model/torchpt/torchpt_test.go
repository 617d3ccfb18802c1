package torchpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/x448/float16"
)

// TestFixtures_equalSafetensorsTwins loads the two torch.save fixtures and
// checks every tensor against its safetensors twin, bit for bit.
func TestFixtures_equalSafetensorsTwins(t *testing.T) {
	fx := filepath.Join(testenv.Fixtures(t), "rewards-tiny")
	for _, c := range []struct{ pt, st string }{
		{"imagereward/ImageReward.pt", "imagereward/ImageReward.safetensors"},
		{"dino/dino_vit_tiny16.pth", "dino/dino_vit_tiny16.safetensors"},
	} {
		pf, err := Open(filepath.Join(fx, c.pt))
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		sf, err := safetensors.Open(filepath.Join(fx, c.st))
		if err != nil {
			t.Fatal(err)
		}
		defer sf.Close()
		sn := sf.Names()
		if got := pf.SortedNames(); !reflect.DeepEqual(got, sortedCopy(sn)) {
			t.Fatalf("%s: %d names, safetensors has %d", c.pt, len(got), len(sn))
		}
		for _, name := range sn {
			a, ai, err := pf.Raw(name)
			if err != nil {
				t.Fatal(err)
			}
			b, bi, err := sf.Raw(name)
			if err != nil {
				t.Fatal(err)
			}
			if ai.DType != bi.DType || !reflect.DeepEqual(ai.Shape, bi.Shape) || !bytes.Equal(a, b) {
				t.Errorf("%s %s: %s %v differs from the safetensors %s %v", c.pt, name, ai.DType, ai.Shape, bi.DType, bi.Shape)
			}
		}
		t.Logf("%s: %d tensors identical to %s", c.pt, len(sn), c.st)
	}
	f, err := Open(filepath.Join(fx, "imagereward/ImageReward.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, info, err := f.Int64("blip.text_encoder.embeddings.position_ids")
	if err != nil || info.DType != safetensors.I64 || len(ids) != 512 || ids[0] != 0 || ids[511] != 511 {
		t.Errorf("position_ids: %v %v %v", info, err, ids[:3])
	}
	if f.Names()[0] != "blip.visual_encoder.cls_token" {
		t.Errorf("state_dict order lost: first name %q", f.Names()[0])
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

// views is a state_dict exercising strides, offsets, shared and broadcast
// storages, fp16, int64, scalars and empty tensors.
var views = []tview{
	{"t", "0", "FloatStorage", 10, 1, []int64{2, 3}, []int64{1, 2}},
	{"full", "0", "FloatStorage", 10, 0, []int64{10}, []int64{1}},
	{"scalar", "0", "FloatStorage", 10, 9, nil, nil},
	{"bcast", "0", "FloatStorage", 10, 2, []int64{2, 2}, []int64{0, 1}},
	{"empty", "0", "FloatStorage", 10, 0, []int64{0, 3}, []int64{3, 1}},
	{"half", "1", "HalfStorage", 3, 0, []int64{3}, []int64{1}},
	{"long", "2", "LongStorage", 3, 0, []int64{3, 1}, []int64{1, 1}},
	{"nested.sub", "0", "FloatStorage", 10, 4, []int64{2}, []int64{3}},
}

func viewStorages() map[string][]byte {
	s0 := f32bytes(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	s1 := make([]byte, 6)
	for i, v := range []float32{0.5, -2, 65504} {
		binary.LittleEndian.PutUint16(s1[2*i:], float16.Fromfloat32(v).Bits())
	}
	s2 := make([]byte, 24)
	for i, v := range []int64{-1, 5, 1 << 40} {
		binary.LittleEndian.PutUint64(s2[8*i:], uint64(v))
	}
	return map[string][]byte{"0": s0, "1": s1, "2": s2}
}

func checkViews(t *testing.T, f *File) {
	t.Helper()
	want := map[string][]float32{
		"t": {1, 3, 5, 2, 4, 6}, "full": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "scalar": {9},
		"bcast": {2, 3, 2, 3}, "empty": {}, "half": {0.5, -2, 65504}, "long": {-1, 5, 1 << 40},
		"nested.sub": {4, 7},
	}
	for name, w := range want {
		got, info, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %v, want %v (info %+v)", name, got, w, info)
		}
	}
	if i, _ := f.Info("t"); !reflect.DeepEqual(i.Shape, []int{2, 3}) || i.DType != safetensors.F32 || i.Offset != -1 {
		t.Errorf("t info %+v", i)
	}
	if i, _ := f.Info("scalar"); len(i.Shape) != 0 || i.Size != 4 {
		t.Errorf("scalar info %+v", i)
	}
	l, info, err := f.Int64("long")
	if err != nil || !reflect.DeepEqual(l, []int64{-1, 5, 1 << 40}) || info.DType != safetensors.I64 {
		t.Errorf("long = %v %v %v", l, info, err)
	}
	if _, _, err := f.Int64("t"); err == nil {
		t.Errorf("Int64 of a float tensor succeeded")
	}
}

func TestViews_zip(t *testing.T) {
	z := zipCheckpoint(t, nestedDict(), viewStorages())
	f, err := Parse(bytes.NewReader(z), int64(len(z)), "views.pt")
	if err != nil {
		t.Fatal(err)
	}
	checkViews(t, f)
	if !reflect.DeepEqual(f.Skipped, []string{"epoch"}) {
		t.Errorf("skipped %v", f.Skipped)
	}
}

// nestedDict pickles {"epoch": 3, "nested": OrderedDict(sub=...)} plus the
// other views at the top level.
func nestedDict() []byte {
	p := &pk{}
	p.op(opProto, 2, opEmptyDict, opMark)
	p.str("epoch").int(3)
	p.str("nested")
	sub := stateDict([]tview{{"sub", "0", "FloatStorage", 10, 4, []int64{2}, []int64{3}}})
	p.Write(sub[2 : len(sub)-1]) // without PROTO and STOP
	p.op(opSetItems)
	// The other tensors at the top level, as one more SETITEMS.
	p.op(opMark)
	for _, t := range views[:len(views)-1] {
		p.str(t.name).global("torch._utils", "_rebuild_tensor_v2").op(opMark)
		p.op(opMark).str("storage").global("torch", t.stype).str(t.key).str("cpu").int(t.numel).op(opTuple, opBinPersID)
		p.int(t.offset).tuple(t.size...).tuple(t.stride...).op(opNewFalse)
		p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opTuple, opReduce)
	}
	p.op(opSetItems, opStop)
	return p.Bytes()
}

func TestViews_legacy(t *testing.T) {
	b := legacyCheckpoint(nestedDict(), []string{"0", "1", "2"}, viewStorages(), map[string]int{"0": 4, "1": 2, "2": 8})
	f, err := Parse(bytes.NewReader(b), int64(len(b)), "legacy.pt")
	if err != nil {
		t.Fatal(err)
	}
	if !f.Legacy {
		t.Error("not detected as legacy")
	}
	checkViews(t, f)
	// A missing storage record and a short file.
	b2 := legacyCheckpoint(nestedDict(), []string{"0", "1"}, viewStorages(), map[string]int{"0": 4, "1": 2})
	if _, err := Parse(bytes.NewReader(b2), int64(len(b2)), "legacy2.pt"); err == nil || !strings.Contains(err.Error(), `"2"`) {
		t.Errorf("missing legacy storage: %v", err)
	}
	if _, err := Parse(bytes.NewReader(b[:len(b)-5]), int64(len(b)-5), "legacy3.pt"); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated legacy file: %v", err)
	}
}

// expectRefused parses b and requires an error naming the file and
// containing every fragment.
func expectRefused(t *testing.T, what string, b []byte, fragments ...string) error {
	t.Helper()
	name := "hostile-" + strings.ReplaceAll(what, " ", "_") + ".pt"
	f, err := Parse(bytes.NewReader(b), int64(len(b)), name)
	if err == nil {
		t.Errorf("%s: accepted (%d tensors)", what, len(f.Names()))
		return nil
	}
	msg := err.Error()
	if !strings.Contains(msg, name) {
		t.Errorf("%s: error does not name the file: %v", what, err)
	}
	for _, fr := range fragments {
		if !strings.Contains(msg, fr) {
			t.Errorf("%s: error %q lacks %q", what, msg, fr)
		}
	}
	t.Logf("%s: %v", what, err)
	return err
}

func TestHostile_refused(t *testing.T) {
	st := viewStorages()
	good := []tview{views[0]}
	zipOf := func(pkl []byte) []byte { return zipCheckpoint(t, pkl, st) }

	// os.system("touch pwned") through GLOBAL + REDUCE.
	p := &pk{}
	p.op(opProto, 2).global("os", "system").op(opMark).str("touch pwned").op(opTuple, opReduce, opStop)
	err := expectRefused(t, "os.system", zipOf(p.Bytes()), "os.system")
	var ge *GlobalError
	if !errors.As(err, &ge) || ge.Global != "os.system" {
		t.Errorf("os.system: not a *GlobalError: %#v", err)
	}
	if !errors.Is(err, ErrFormat) {
		t.Errorf("os.system: not ErrFormat")
	}
	// builtins.eval through STACK_GLOBAL (protocol 4).
	p = &pk{}
	p.op(opProto, 4).str("builtins").str("eval").op(opStackGlobal).str("__import__('os').system('x')").op(opTuple1, opReduce, opStop)
	expectRefused(t, "builtins.eval", zipOf(p.Bytes()), "builtins.eval")
	// The same inside a legacy stream, and nested in a valid state_dict's value.
	expectRefused(t, "legacy os.system", legacyCheckpoint(func() []byte {
		p := &pk{}
		p.op(opProto, 2).global("posix", "system").op(opMark).str("x").op(opTuple, opReduce, opStop)
		return p.Bytes()
	}(), nil, nil, nil), "posix.system")
	// Calling an allowed non-function (a storage class) and a non-global.
	p = &pk{}
	p.op(opProto, 2).global("torch", "FloatStorage").op(opEmptyTuple, opReduce, opStop)
	expectRefused(t, "call storage", zipOf(p.Bytes()), "torch.FloatStorage", "may not be called")
	p = &pk{}
	p.op(opProto, 2).str("x").op(opEmptyTuple, opReduce, opStop)
	expectRefused(t, "call str", zipOf(p.Bytes()), "REDUCE of a str")
	// Class instantiation opcodes.
	p = &pk{}
	p.op(opProto, 2).global("collections", "OrderedDict").op(opEmptyTuple, opNewObj, opStop)
	expectRefused(t, "newobj", zipOf(p.Bytes()), "NEWOBJ")
	p = &pk{}
	p.op(opProto, 2, opMark).op(opInst).WriteString("os\nsystem\n")
	expectRefused(t, "inst", zipOf(p.Bytes()), "INST")
	// An unknown storage type and an unknown opcode.
	p = &pk{}
	p.op(opProto, 2).global("torch", "ComplexFloatStorage").op(opStop)
	expectRefused(t, "complex storage", zipOf(p.Bytes()), "torch.ComplexFloatStorage")
	expectRefused(t, "bad opcode", zipOf([]byte{opProto, 2, 0xff, opStop}), "unknown pickle opcode 0xff")
	// BUILD on a list (would be __setstate__ on an arbitrary object).
	p = &pk{}
	p.op(opProto, 2, opEmptyList, opEmptyDict, opBuild, opStop)
	expectRefused(t, "build list", zipOf(p.Bytes()), "BUILD on a list")

	// A huge allocation claim: the storage says 2^40 floats.
	huge := []tview{{"w", "0", "FloatStorage", 1 << 40, 0, []int64{1 << 20, 1 << 20}, []int64{1 << 20, 1}}}
	expectRefused(t, "huge storage", zipOf(stateDict(huge)), "claims 1099511627776", "holds 40 bytes")
	// A huge string length claim inside the pickle.
	expectRefused(t, "huge string", zipOf([]byte{opProto, 2, opBinUnicode8, 0, 0, 0, 0, 0, 0, 0, 0x40, 'a', opStop}), "exceeds")
	// A view reaching past its storage (storage smaller than the view).
	over := []tview{{"w", "0", "FloatStorage", 10, 4, []int64{2, 4}, []int64{4, 1}}}
	expectRefused(t, "view past storage", zipOf(stateDict(over)), `tensor "w"`, "reaches element 11 of a 10-element storage")
	expand := []tview{{"w", "0", "FloatStorage", 10, 0, []int64{1 << 40}, []int64{0}}}
	expectRefused(t, "expanded view", zipOf(stateDict(expand)), "view of 1099511627776 elements over a 10-element storage")
	neg := []tview{{"w", "0", "FloatStorage", 10, -1, []int64{2}, []int64{1}}}
	expectRefused(t, "negative offset", zipOf(stateDict(neg)), "negative storage offset")
	ovf := []tview{{"w", "0", "FloatStorage", 10, 0, []int64{3, 3}, []int64{1 << 62, 1}}}
	expectRefused(t, "stride overflow", zipOf(stateDict(ovf)), "overflow")
	// Missing storage record.
	missing := []tview{{"w", "7", "FloatStorage", 10, 0, []int64{10}, []int64{1}}}
	expectRefused(t, "missing storage", zipOf(stateDict(missing)), "archive/data/7 is missing")
	// Truncated archive (central directory lost) and an empty file.
	z := zipOf(stateDict(good))
	expectRefused(t, "truncated zip", z[:len(z)/2], "zip archive", "truncated")
	expectRefused(t, "tiny", []byte("PK"), "too short")
	expectRefused(t, "not torch", []byte("hello world"), "neither a torch zip")
	// No tensors at all, a bare tensor, and storages bound inconsistently.
	p = &pk{}
	p.op(opProto, 2, opEmptyDict, opStop)
	expectRefused(t, "no tensors", zipOf(p.Bytes()), "no tensors found")
	// Deep nesting of dicts.
	p = &pk{}
	p.op(opProto, 2)
	for i := 0; i < 100; i++ {
		p.op(opEmptyDict).str("k")
	}
	p.op(opNone)
	for i := 0; i < 100; i++ {
		p.op(opSetItem)
	}
	p.op(opStop)
	expectRefused(t, "deep", zipOf(p.Bytes()), "nested deeper")
	// Memo misuse and stack underflow.
	expectRefused(t, "memo", zipOf([]byte{opProto, 2, opBinGet, 7, opStop}), "memo index 7")
	expectRefused(t, "underflow", zipOf([]byte{opProto, 2, opTuple2, opStop}), "stack underflow")
	expectRefused(t, "no stop", zipOf([]byte{opProto, 2, opNone}), "no STOP")
}

// TestHostile_noCodeRuns makes sure a refused os.system payload had no
// effect (belt and braces: the machine has no way to run it).
func TestHostile_noCodeRuns(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	p := &pk{}
	p.op(opProto, 2).global("os", "system").op(opMark).str("touch "+marker).op(opTuple, opReduce, opStop)
	path := writeTemp(t, "evil.pt", zipCheckpoint(t, p.Bytes(), nil))
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("evil.pt: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("payload ran")
	}
}

// TestMutations_neverPanic flips, truncates and splices bytes of a valid
// archive and legacy stream; every result must be an error or a file whose
// tensors all read, never a panic.
func TestMutations_neverPanic(t *testing.T) {
	seed := int64(1)
	if s := os.Getenv("IB_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	bases := [][]byte{
		zipCheckpoint(t, nestedDict(), viewStorages()),
		legacyCheckpoint(nestedDict(), []string{"0", "1", "2"}, viewStorages(), map[string]int{"0": 4, "1": 2, "2": 8}),
	}
	ok := 0
	for i := 0; i < 3000; i++ {
		b := append([]byte(nil), bases[i%2]...)
		switch rng.Intn(3) {
		case 0:
			for k := 0; k < 1+rng.Intn(4); k++ {
				b[rng.Intn(len(b))] = byte(rng.Intn(256))
			}
		case 1:
			b = b[:rng.Intn(len(b))]
		case 2:
			at := rng.Intn(len(b))
			b = append(b[:at], append([]byte{byte(rng.Intn(256)), byte(rng.Intn(256))}, b[at:]...)...)
		}
		if parseAndRead(b) {
			ok++
		}
	}
	t.Logf("3000 mutations: %d still parse and read", ok)
}

// parseAndRead reports whether b parsed and every tensor read.
func parseAndRead(b []byte) bool {
	f, err := Parse(bytes.NewReader(b), int64(len(b)), "fuzz.pt")
	if err != nil {
		return false
	}
	for _, n := range f.Names() {
		if _, _, err := f.Float32(n); err != nil {
			return false
		}
	}
	return true
}

func FuzzParse(f *testing.F) {
	f.Add(zipCheckpoint(f, nestedDict(), viewStorages()))
	f.Add(legacyCheckpoint(nestedDict(), []string{"0", "1", "2"}, viewStorages(), map[string]int{"0": 4, "1": 2, "2": 8}))
	f.Add(nestedDict())
	f.Fuzz(func(t *testing.T, b []byte) { parseAndRead(b) })
}

// TestOpenCheckpoint_sniffs picks the reader by content, not extension.
func TestOpenCheckpoint_sniffs(t *testing.T) {
	fx := filepath.Join(testenv.Fixtures(t), "rewards-tiny", "dino")
	legacy := writeTemp(t, "old.safetensors", legacyCheckpoint(nestedDict(), []string{"0", "1", "2"}, viewStorages(), map[string]int{"0": 4, "1": 2, "2": 8}))
	for path, want := range map[string]string{
		filepath.Join(fx, "dino_vit_tiny16.pth"):         "*torchpt.File",
		filepath.Join(fx, "dino_vit_tiny16.safetensors"): "*safetensors.File",
		legacy: "*torchpt.File",
	} {
		c, err := OpenCheckpoint(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%T", c); got != want {
			t.Errorf("%s opened as %s, want %s", path, got, want)
		}
		if _, ok := c.Info("nested.sub"); !ok && want == "*torchpt.File" && path == legacy {
			t.Errorf("legacy file lost its tensors")
		}
		c.Close()
	}
	if IsTorch([]byte{0x80, 0x02, 0, 0, 0, 0, 0, 0, '{'}) {
		t.Error("a safetensors header of length 0x280 taken for a pickle")
	}
}

// TestManyKeys: a state_dict with 200k entries (and a repeated key, which
// replaces the earlier value as in Python) parses in linear time.
func TestManyKeys(t *testing.T) {
	p := &pk{}
	p.op(opProto, 2, opEmptyDict, opMark)
	for i := 0; i < 200000; i++ {
		p.str(fmt.Sprintf("k%d", i)).int(int64(i))
	}
	p.str("k7").global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.op(opMark).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(10).op(opTuple, opBinPersID)
	p.int(0).tuple(10).tuple(1).op(opNewFalse, opNone, opTuple, opReduce)
	p.op(opSetItems, opStop)
	z := zipCheckpoint(t, p.Bytes(), viewStorages())
	f, err := Parse(bytes.NewReader(z), int64(len(z)), "many.pt")
	if err != nil {
		t.Fatal(err)
	}
	if n := f.Names(); len(n) != 1 || n[0] != "k7" || len(f.Skipped) != 199999 {
		t.Errorf("names %v, %d skipped", n, len(f.Skipped))
	}
}

// TestOldRebuildTensor: torch < 1.0 pickled tensors with the four-argument
// _rebuild_tensor.
func TestOldRebuildTensor(t *testing.T) {
	p := &pk{}
	p.op(opProto, 2, opEmptyDict).str("w").global("torch._utils", "_rebuild_tensor").op(opMark)
	p.op(opMark).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(10).op(opTuple, opBinPersID)
	p.int(2).tuple(2, 2).tuple(2, 1).op(opTuple, opReduce, opSetItem, opStop)
	b := legacyCheckpoint(p.Bytes(), []string{"0"}, viewStorages(), map[string]int{"0": 4})
	f, err := Parse(bytes.NewReader(b), int64(len(b)), "old.pt")
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := f.Float32("w"); err != nil || !reflect.DeepEqual(v, []float32{2, 3, 4, 5}) {
		t.Errorf("w = %v, %v", v, err)
	}
}
