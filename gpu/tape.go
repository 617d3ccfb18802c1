package gpu

// Reverse-mode autograd.
//
// Ops record a node on the engine's tape when gradients are being recorded
// (not inside NoGrad) and at least one input requires a gradient. Backward
// walks the tape in reverse, handing each node the gradient of its output;
// the node's backward function computes input gradients with the backward
// kernels and hands them to accumulate. Gradients of leaves (parameters and
// inputs marked with SetRequiresGrad) accumulate across Backward calls until
// ZeroGrad; gradients of intermediate tensors are freed as soon as their
// node has run.
//
// Lifetimes: a tensor that a recorded node uses is pinned until the tape is
// reset, so closing a Scope never frees what Backward will need. In NoGrad
// mode nothing is pinned, and a Scope frees every tensor created in it
// except those passed to Close — this is how model code frees activations
// as soon as a block has consumed them.

type node struct {
	out      *Tensor
	inputs   []*Tensor
	backward func(g *Tensor)
}

type tape struct {
	nodes  []*node
	pinned []*Tensor
}

func (e *Engine) recording() bool { return e.noGrad == 0 }

// NoGrad runs f without recording gradients.
func (e *Engine) NoGrad(f func()) {
	e.noGrad++
	defer func() { e.noGrad-- }()
	f()
}

// GradEnabled reports whether ops are being recorded.
func (e *Engine) GradEnabled() bool { return e.recording() }

// record registers out as produced from inputs, with bw computing the
// inputs' gradients from out's. It does nothing unless recording and some
// input requires a gradient.
func (e *Engine) record(out *Tensor, inputs []*Tensor, bw func(g *Tensor)) {
	if !e.recording() {
		return
	}
	need := false
	for _, in := range inputs {
		if in != nil && in.requiresGrad {
			need = true
		}
	}
	if !need {
		return
	}
	e.recordNode(out, inputs, bw)
}

// recordNode records unconditionally (while recording).
func (e *Engine) recordNode(out *Tensor, inputs []*Tensor, bw func(g *Tensor)) {
	if e.tape == nil {
		e.tape = &tape{}
	}
	out.requiresGrad = true
	n := &node{out: out, inputs: inputs, backward: bw}
	out.node = n
	e.tape.nodes = append(e.tape.nodes, n)
	e.pin(out)
	for _, in := range inputs {
		e.pin(in)
	}
}

func (e *Engine) pin(t *Tensor) {
	if t == nil {
		return
	}
	t.pins++
	e.tape.pinned = append(e.tape.pinned, t)
}

// ResetTape forgets every recorded node and frees the tensors that only the
// tape kept alive. Backward calls it when it is done.
func (e *Engine) ResetTape() {
	if e.tape == nil {
		return
	}
	for _, t := range e.tape.pinned {
		t.pins--
		if t.pins == 0 && t.orphan {
			t.Release()
		}
	}
	for _, n := range e.tape.nodes {
		n.out.node = nil
		n.inputs = nil
	}
	e.tape = nil
}

// Backward computes d(loss)/d(leaf) for every leaf that requires a gradient
// and adds it to the leaf's Grad. loss must be a scalar (one element); for
// other outputs use BackwardWith. The tape is reset afterwards.
func (e *Engine) Backward(loss *Tensor) error {
	if loss.n != 1 {
		return errorf("Backward needs a one-element loss, got %v", loss.shape)
	}
	e.trackOff++
	g := e.Full(1, loss.shape...)
	e.trackOff--
	return e.BackwardWith(loss, g)
}

// BackwardWith starts backpropagation at out with gradient g (same shape;
// ownership of g passes to the engine).
func (e *Engine) BackwardWith(out, g *Tensor) error {
	if !sameShape(out.shape, g.shape) {
		return errorf("BackwardWith: gradient %v for output %v", g.shape, out.shape)
	}
	if !out.requiresGrad {
		g.Release()
		return errorf("Backward: the output does not depend on anything that requires a gradient")
	}
	e.backwardFrom(out, g)
	e.ResetTape()
	return e.lost
}

func (e *Engine) backwardFrom(out, g *Tensor) {
	e.noGrad++
	e.trackOff++
	defer func() { e.noGrad--; e.trackOff-- }()
	out.accumulate(g)
	if e.tape == nil {
		return
	}
	nodes := e.tape.nodes
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		g := n.out.Grad
		if g == nil {
			continue
		}
		n.out.Grad = nil
		n.backward(g)
		g.Release()
	}
}

// accumulate adds g into t.Grad, taking ownership of g. Non-leaf tensors
// hold their gradient only until their node runs.
func (t *Tensor) accumulate(g *Tensor) {
	if !t.requiresGrad {
		g.Release()
		return
	}
	if !sameShape(g.shape, t.shape) {
		panic("gpu: gradient shape " + shapeStr(g.shape) + " for tensor " + shapeStr(t.shape))
	}
	e := t.e
	if t.Grad == nil {
		if t.node == nil {
			e.pool.recat(g.buf, Gradients)
		}
		t.Grad = g
		return
	}
	if t.Grad.buf.refs > 1 {
		// Shared with another holder: add out of place (copy on write).
		sum := e.addSame(t.Grad, g)
		if t.node == nil {
			e.pool.recat(sum.buf, Gradients)
		}
		t.Grad.Release()
		t.Grad = sum
	} else {
		e.addInPlace(t.Grad, g)
	}
	g.Release()
}

// share returns a view of t that holds its own reference to the buffer.
func (t *Tensor) share() *Tensor { return t.view(t.shape) }

// ZeroGrad releases the gradients of the given tensors.
func ZeroGrad(params ...*Tensor) {
	for _, p := range params {
		if p.Grad != nil {
			p.Grad.Release()
			p.Grad = nil
		}
	}
}

// Detach returns a view of t that is a leaf: no gradient flows through it.
func (t *Tensor) Detach() *Tensor {
	v := t.view(t.shape)
	v.requiresGrad = false
	return v
}

// Scope collects the tensors created while it is the innermost scope.
type Scope struct {
	e     *Engine
	items []*Tensor
}

// Scope opens a scope; Close it (usually deferred) to free its tensors.
func (e *Engine) Scope() *Scope {
	s := &Scope{e: e}
	e.scopes = append(e.scopes, s)
	return s
}

func (e *Engine) track(t *Tensor) {
	if e.trackOff > 0 || len(e.scopes) == 0 {
		return
	}
	s := e.scopes[len(e.scopes)-1]
	s.items = append(s.items, t)
}

// Consume releases intermediate tensors at once when gradients are not
// being recorded: inference code calls it on activations it has used up,
// so peak memory is what one layer needs rather than what a whole block
// created. While recording it does nothing (Backward may need them).
// Releasing again at Scope close is harmless.
func (e *Engine) Consume(ts ...*Tensor) {
	if e.recording() {
		return
	}
	for _, t := range ts {
		t.Release()
	}
}

// Outside runs f with the tensors it creates belonging to no scope: they
// live until released, whatever scopes are open (e.g. activations copied
// out of a model for inspection).
func (e *Engine) Outside(f func()) {
	e.trackOff++
	defer func() { e.trackOff-- }()
	f()
}

// Close frees every tensor created in the scope except keep, which move to
// the enclosing scope (or become the caller's). Tensors the tape still needs
// are freed when the tape is reset.
func (s *Scope) Close(keep ...*Tensor) {
	e := s.e
	if len(e.scopes) == 0 || e.scopes[len(e.scopes)-1] != s {
		panic("gpu: scopes closed out of order")
	}
	e.scopes = e.scopes[:len(e.scopes)-1]
	kept := map[*Tensor]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	var parent *Scope
	if len(e.scopes) > 0 {
		parent = e.scopes[len(e.scopes)-1]
	}
	for _, t := range s.items {
		switch {
		case kept[t]:
			if parent != nil {
				parent.items = append(parent.items, t)
			}
		case t.pins > 0:
			t.orphan = true
		default:
			t.Release()
		}
	}
	s.items = nil
}

// Checkpoint runs fn without keeping its intermediate activations and
// recomputes them during Backward (gradient checkpointing). fn must be
// deterministic and use only ins and leaves (parameters).
func (e *Engine) Checkpoint(fn func(ins []*Tensor) *Tensor, ins ...*Tensor) *Tensor {
	if !e.recording() {
		return fn(ins)
	}
	var out *Tensor
	e.NoGrad(func() {
		s := e.Scope()
		out = fn(ins)
		s.Close(out)
	})
	e.recordNode(out, ins, func(g *Tensor) {
		trackOff := e.trackOff
		e.trackOff = 0
		saved := e.tape
		e.tape = nil
		s := e.Scope()
		leaves := make([]*Tensor, len(ins))
		for i, in := range ins {
			leaves[i] = in.view(in.shape)
			leaves[i].requiresGrad = in.requiresGrad
		}
		e.noGrad--
		o := fn(leaves)
		e.noGrad++
		if o.requiresGrad {
			e.backwardFrom(o, g.share())
		}
		e.ResetTape()
		for i, l := range leaves {
			if l.Grad != nil {
				gi := l.Grad
				l.Grad = nil
				ins[i].accumulate(gi)
			}
		}
		s.Close()
		e.tape = saved
		e.trackOff = trackOff
	})
	return out
}
