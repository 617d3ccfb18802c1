package torchpt

import "fmt"

// The globals the restricted pickle machine resolves, and the only calls
// (REDUCE) it makes: Go functions that rebuild an OrderedDict, a tensor
// view or a Parameter from plain data.

// Globals the machine resolves. Storage classes are data (the second field
// of a persistent id); the functions are the only REDUCE targets.
var (
	storageTypes = map[string]dtype{
		"FloatStorage": dtF32, "DoubleStorage": dtF64, "HalfStorage": dtF16, "BFloat16Storage": dtBF16,
		"LongStorage": dtI64, "IntStorage": dtI32, "ShortStorage": dtI16, "CharStorage": dtI8,
		"ByteStorage": dtU8, "BoolStorage": dtBool,
	}
	reduceTargets = map[string]bool{
		"collections.OrderedDict":                    true,
		"torch._utils._rebuild_tensor":               true, // torch < 1.0
		"torch._utils._rebuild_tensor_v2":            true,
		"torch._utils._rebuild_parameter":            true,
		"torch._utils._rebuild_parameter_with_state": true,
	}
)

func allowedGlobal(g global) bool {
	if g.module == "torch" {
		_, ok := storageTypes[g.name]
		return ok
	}
	return reduceTargets[g.String()]
}

func (u *unpickler) global(g global) error {
	if !allowedGlobal(g) {
		if g.module == "torch" && len(g.name) > 7 && g.name[len(g.name)-7:] == "Storage" {
			return &GlobalError{Global: g.String(), Why: "storage type not supported"}
		}
		return &GlobalError{Global: g.String(), Why: "not an allowed global: only OrderedDict, torch storages and tensor rebuild functions are"}
	}
	u.push(g)
	return nil
}

// reduce applies an allowed callable to its argument tuple.
func (u *unpickler) reduce(f, args any) (any, error) {
	g, ok := f.(global)
	if !ok {
		return nil, u.errorf("REDUCE of a %s (only allowed globals may be called)", typeName(f))
	}
	if !reduceTargets[g.String()] {
		return nil, &GlobalError{Global: g.String(), Why: "may not be called"}
	}
	t, ok := args.(*pyTuple)
	if !ok {
		return nil, u.errorf("%s called with a %s instead of an argument tuple", g, typeName(args))
	}
	a := t.items
	switch g.String() {
	case "collections.OrderedDict":
		d := &pyDict{}
		if len(a) > 1 {
			return nil, u.errorf("OrderedDict with %d arguments", len(a))
		}
		if len(a) == 1 && a[0] != nil {
			var pairs []any
			switch l := a[0].(type) {
			case *pyList:
				pairs = l.items
			case *pyTuple:
				pairs = l.items
			case *pyDict:
				for i := range l.keys {
					d.set(l.keys[i], l.vals[i])
				}
			default:
				return nil, u.errorf("OrderedDict of a %s", typeName(a[0]))
			}
			for _, p := range pairs {
				kv, ok := p.(*pyTuple)
				if !ok || len(kv.items) != 2 {
					return nil, u.errorf("OrderedDict item is not a (key, value) pair")
				}
				d.set(kv.items[0], kv.items[1])
			}
		}
		return d, nil
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		if len(a) < 4 {
			return nil, u.errorf("_rebuild_tensor_v2 with %d arguments", len(a))
		}
		st, ok := a[0].(*storageRef)
		if !ok {
			return nil, u.errorf("_rebuild_tensor_v2 storage is a %s", typeName(a[0]))
		}
		off, ok := a[1].(int64)
		if !ok {
			return nil, u.errorf("_rebuild_tensor_v2 storage offset is a %s", typeName(a[1]))
		}
		size, err := u.ints(a[2], "size")
		if err != nil {
			return nil, err
		}
		stride, err := u.ints(a[3], "stride")
		if err != nil {
			return nil, err
		}
		return &tensorRef{storage: st, offset: off, size: size, stride: stride}, nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(a) < 1 {
			return nil, u.errorf("%s without arguments", g)
		}
		t, ok := a[0].(*tensorRef)
		if !ok {
			return nil, u.errorf("%s of a %s", g, typeName(a[0]))
		}
		return t, nil
	}
	return nil, &GlobalError{Global: g.String(), Why: "may not be called"}
}

func (u *unpickler) ints(v any, what string) ([]int64, error) {
	t, ok := v.(*pyTuple)
	if !ok {
		return nil, u.errorf("tensor %s is a %s, not a tuple", what, typeName(v))
	}
	out := make([]int64, len(t.items))
	for i, x := range t.items {
		n, ok := x.(int64)
		if !ok {
			return nil, u.errorf("tensor %s entry is a %s", what, typeName(x))
		}
		out[i] = n
	}
	return out, nil
}

// GlobalError reports a pickle global that the reader refuses to resolve
// or call: loading a checkpoint never runs code from it.
type GlobalError struct {
	Global string // module.name as the pickle spells it
	Why    string
}

func (e *GlobalError) Error() string {
	return fmt.Sprintf("refusing pickle global %s: %s", e.Global, e.Why)
}
