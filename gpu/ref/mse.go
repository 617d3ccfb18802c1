package ref

// MSE returns mean((pred - target)^2), shape [].
func MSE(pred, target *T) *T {
	s := 0.0
	for i := range pred.Data {
		d := pred.Data[i] - target.Data[i]
		s += d * d
	}
	return From([]float64{s / float64(len(pred.Data))})
}

// MSEBackward returns the gradients of pred and target given g (shape []).
func MSEBackward(pred, target, g *T) (dpred, dtarget *T) {
	dpred, dtarget = New(pred.Shape...), New(target.Shape...)
	c := 2 * g.Data[0] / float64(len(pred.Data))
	for i := range pred.Data {
		d := c * (pred.Data[i] - target.Data[i])
		dpred.Data[i] = d
		dtarget.Data[i] = -d
	}
	return
}
