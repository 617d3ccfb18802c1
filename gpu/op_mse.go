package gpu

import "fmt"

// MSELoss. Forward: shaders/mse_fwd.wgsl (squared differences) then the
// mean with shaders/reduce_fwd.wgsl; backward: shaders/mse_bwd.wgsl.
// Reference: ref.MSE / ref.MSEBackward.

// MSELoss returns mean((pred - target)^2) over every element, shape [] (one
// element, ready for Engine.Backward). pred and target must have the same
// shape (no broadcasting); both get gradients if they require them.
func (e *Engine) MSELoss(pred, target *Tensor) *Tensor {
	if !sameShape(pred.shape, target.shape) {
		panic(fmt.Sprintf("gpu: MSELoss of %v against %v (shapes must match)", pred.shape, target.shape))
	}
	n := pred.n
	sq, err := e.NewTensor(Scratch, pred.shape...)
	if err != nil {
		panic(err)
	}
	e.chunks(n, func(from, count int) {
		e.Dispatch(Kernel{File: "mse_fwd.wgsl", Entry: "main"}, Params{count}, e.Grid1D(count, 256),
			pred.window(from, count), target.window(from, count), sq.window(from, count))
	})
	out := e.alloc()
	e.reduceInto(sq, planReduce(sq.shape, nil), out, 1/float32(n))
	sq.Release()
	e.record(out, []*Tensor{pred, target}, func(g *Tensor) {
		for i, x := range []*Tensor{pred, target} {
			if !x.requiresGrad {
				continue
			}
			coef := 2 / float32(n)
			if i == 1 {
				coef = -coef
			}
			dx := e.alloc(x.shape...)
			e.chunks(n, func(from, count int) {
				e.Dispatch(Kernel{File: "mse_bwd.wgsl", Entry: "main"}, Params{count, coef}, e.Grid1D(count, 256),
					g.bind(), pred.window(from, count), target.window(from, count), dx.window(from, count))
			})
			x.accumulate(dx)
		}
	})
	return out
}
