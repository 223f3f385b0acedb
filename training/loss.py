"""EG3D's GAN objective: non-saturating logistic loss, R1 on both discriminator inputs (image and raw
neural rendering), lazy density regularization of the tri-plane decoder, generator pose-conditioning swaps,
and the schedules (D input blur, swap probability, neural rendering resolution) that depend on the number
of real images seen so far."""

import numpy as np
import torch

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix, upfirdn2d
from training import presets
from training.dual_discriminator import filtered_resizing

#----------------------------------------------------------------------------

class Loss:
    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg): # to be overridden
        raise NotImplementedError()

#----------------------------------------------------------------------------

def blur_sigma_at(cur_nimg, blur_init_sigma, blur_fade_kimg):
    """D input blur: blur_init_sigma falling linearly to 0 over blur_fade_kimg (no blur if the fade is <= 0)."""
    if blur_fade_kimg <= 0:
        return 0
    return max(1 - cur_nimg / (blur_fade_kimg * 1e3), 0) * blur_init_sigma

def swapping_prob_at(cur_nimg, gpc_reg_prob, gpc_reg_fade_kimg):
    """Probability of conditioning G on another sample's camera: 1 falling linearly to gpc_reg_prob."""
    if gpc_reg_prob is None:
        return None
    alpha = min(cur_nimg / (gpc_reg_fade_kimg * 1e3), 1) if gpc_reg_fade_kimg > 0 else 1
    return (1 - alpha) * 1 + alpha * gpc_reg_prob

def neural_rendering_resolution_at(cur_nimg, initial, final, fade_kimg):
    """Resolution of the raw rendering: initial, or a linear fade to final rounded half-to-even."""
    if final is None:
        return initial
    # A zero-length fade switches at once (docs/compat.md).
    alpha = min(cur_nimg / (fade_kimg * 1e3), 1) if fade_kimg > 0 else 1
    return int(np.rint(initial * (1 - alpha) + final * alpha))

def blur_image(img, sigma):
    """Separable blur with taps 2^-(x/sigma)^2 at integer offsets |x| <= floor(3 sigma), zero padding."""
    blur_size = np.floor(sigma * 3)
    if blur_size <= 0:
        return img
    taps = torch.arange(-blur_size, blur_size + 1, device=img.device).div(sigma).square().neg().exp2()
    return upfirdn2d.filter2d(img, taps / taps.sum())

#----------------------------------------------------------------------------

# Loss terms evaluated by each training phase (train.py's phase names).
PHASE_TERMS = {
    'Gmain': ('Gmain',), 'Greg': ('Greg',), 'Gboth': ('Gmain', 'Greg'),
    'Dmain': ('Dgen', 'Dreal'), 'Dreg': ('Dr1',), 'Dboth': ('Dgen', 'Dreal', 'Dr1'),
}

class StyleGAN2Loss(Loss):
    def __init__(self, device, G, D, augment_pipe=None, r1_gamma=10, style_mixing_prob=0,
            blur_init_sigma=0, blur_fade_kimg=0,        # D input blur, fading out over blur_fade_kimg.
            neural_rendering_resolution_initial=presets.NEURAL_RENDERING_RESOLUTION, neural_rendering_resolution_final=None,
            neural_rendering_resolution_fade_kimg=0,    # final None: no resolution fade.
            gpc_reg_fade_kimg=1000, gpc_reg_prob=None,  # gpc_reg_prob None: no generator pose conditioning.
            dual_discrimination=False,                  # R1 also w.r.t. the raw rendering.
            filter_mode='antialiased'):                 # How reals are resized to the raw resolution.
        super().__init__()
        assert gpc_reg_prob is None or (0 <= gpc_reg_prob <= 1)
        self.device, self.G, self.D, self.augment_pipe = device, G, D, augment_pipe
        self.r1_gamma, self.style_mixing_prob = r1_gamma, style_mixing_prob
        self.dual_discrimination, self.filter_mode = dual_discrimination, filter_mode
        # Schedules over the number of real images shown: arguments of the *_at() functions above.
        self.blur_schedule = (blur_init_sigma, blur_fade_kimg)
        self.gpc_schedule = (gpc_reg_prob, gpc_reg_fade_kimg)
        self.resolution_schedule = (neural_rendering_resolution_initial, neural_rendering_resolution_final,
            neural_rendering_resolution_fade_kimg)
        self.resample_filter = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
        # Count of backpropagated loss terms that were not finite; read and reset by the training loop.
        self.nonfinite = torch.zeros([], device=device)

    def _backward(self, loss, gain):
        loss = loss.mean().mul(gain)
        self.nonfinite += (~torch.isfinite(loss.detach())).float()
        loss.backward()

    def _conditioning(self, c, swapping_prob, per_sample):
        """Label seen by G's mapping: zeros without GPC, else sometimes another sample's camera (rolled by one)."""
        if swapping_prob is None:
            return torch.zeros_like(c)
        c_swapped = torch.roll(c.clone(), 1, 0)
        draw_shape = [c.shape[0], 1] if per_sample else []
        return torch.where(torch.rand(draw_shape, device=c.device) < swapping_prob, c_swapped, c)

    def _mix_styles(self, ws, z, c):
        """With probability style_mixing_prob, replace ws[:, k:] (k uniform in 1..num_ws-1) by those of a new z."""
        if self.style_mixing_prob <= 0:
            return ws
        cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
        cutoff = torch.where(torch.rand([], device=ws.device) < self.style_mixing_prob, cutoff,
                             torch.full_like(cutoff, ws.shape[1]))
        ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), c, update_emas=False)[:, cutoff:]
        return ws

    def run_G(self, z, c, swapping_prob, neural_rendering_resolution, update_emas=False):
        c_gen_conditioning = self._conditioning(c, swapping_prob, per_sample=True)
        ws = self.G.mapping(z, c_gen_conditioning, update_emas=update_emas)
        # The mixing mapping sees the unswapped camera.
        ws = self._mix_styles(ws, z, c)
        gen_output = self.G.synthesis(ws, c, neural_rendering_resolution=neural_rendering_resolution,
                                      update_emas=update_emas)
        return gen_output, ws

    def _augment(self, img):
        """Augment the image and the raw image with the same draws: the raw image is upsampled, stacked on the
        channels, augmented, split off and downsampled again."""
        def resize(x, size):
            return torch.nn.functional.interpolate(x, size=size, mode='bilinear', align_corners=False, antialias=True)
        image, raw = img['image'], img['image_raw']
        stacked = self.augment_pipe(torch.cat([image, resize(raw, image.shape[2:])], dim=1))
        img['image'] = stacked[:, :image.shape[1]]
        img['image_raw'] = resize(stacked[:, image.shape[1]:], raw.shape[2:])

    def run_D(self, img, c, blur_sigma=0, update_emas=False):
        # The dict entries are replaced by what D actually sees, so R1 differentiates w.r.t. those.
        img['image'] = blur_image(img['image'], blur_sigma)
        if self.augment_pipe is not None:
            self._augment(img)
        return self.D(img, c, update_emas=update_emas)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        assert phase in PHASE_TERMS
        terms = set(PHASE_TERMS[phase])
        if self.G.rendering_kwargs.get('density_reg', 0) == 0:
            terms.discard('Greg')
        if self.r1_gamma == 0:
            terms.discard('Dr1')
        blur_sigma = blur_sigma_at(cur_nimg, *self.blur_schedule)
        swapping_prob = swapping_prob_at(cur_nimg, *self.gpc_schedule)
        nrr = neural_rendering_resolution_at(cur_nimg, *self.resolution_schedule)
        fake_args = dict(gen_z=gen_z, gen_c=gen_c, swapping_prob=swapping_prob, nrr=nrr, blur_sigma=blur_sigma,
            gain=gain)

        if 'Gmain' in terms:
            self._fake_term(for_generator=True, **fake_args)
        if 'Greg' in terms:
            self._density_regularization(gen_z, gen_c, swapping_prob, gain)
        loss_Dgen = self._fake_term(for_generator=False, **fake_args) if 'Dgen' in terms else 0
        if terms & {'Dreal', 'Dr1'}:
            # The real raw image is blurred like D's image input; generated raw images are not blurred.
            raw = filtered_resizing(real_img, size=nrr, f=self.resample_filter, filter_mode=self.filter_mode)
            real = {'image': real_img, 'image_raw': blur_image(raw, blur_sigma)}
            self._real_terms(real, real_c, blur_sigma, gain, terms, loss_Dgen)

    def _fake_term(self, gen_z, gen_c, swapping_prob, nrr, blur_sigma, gain, for_generator):
        """Gmain (G wants D to call its images real) or Dgen (D wants to call them fake); returns the loss."""
        label = 'Gmain' if for_generator else 'Dgen'
        with torch.autograd.profiler.record_function(label + '_forward'):
            gen_img, _ = self.run_G(gen_z, gen_c, swapping_prob=swapping_prob, neural_rendering_resolution=nrr,
                update_emas=not for_generator)
            logits = self.run_D(gen_img, gen_c, blur_sigma=blur_sigma, update_emas=not for_generator)
            training_stats.report('Loss/scores/fake', logits)
            training_stats.report('Loss/signs/fake', logits.sign())
            loss = torch.nn.functional.softplus(-logits if for_generator else logits)
            if for_generator:
                training_stats.report('Loss/G/loss', loss)
        with torch.autograd.profiler.record_function(label + '_backward'):
            self._backward(loss, gain)
        return loss

    def _real_terms(self, real, real_c, blur_sigma, gain, terms, loss_Dgen):
        """Dreal (D wants to call reals real) and/or Dr1 (R1 penalty on D's input gradient), one backward."""
        label = '_'.join(term for term in ('Dreal', 'Dr1') if term in terms)
        with_r1 = 'Dr1' in terms
        with torch.autograd.profiler.record_function(label + '_forward'):
            real = {key: value.detach().requires_grad_(with_r1) for key, value in real.items()}
            logits = self.run_D(real, real_c, blur_sigma=blur_sigma)
            training_stats.report('Loss/scores/real', logits)
            training_stats.report('Loss/signs/real', logits.sign())
            loss = 0
            if 'Dreal' in terms:
                loss = torch.nn.functional.softplus(-logits)
                training_stats.report('Loss/D/loss', loss_Dgen + loss)
            if with_r1:
                loss = loss + self._r1_term(real, logits)
        with torch.autograd.profiler.record_function(label + '_backward'):
            self._backward(loss, gain)

    def _r1_term(self, real, logits):
        inputs = [real['image'], real['image_raw']] if self.dual_discrimination else [real['image']]
        with torch.autograd.profiler.record_function('r1_grads'), conv2d_gradfix.no_weight_gradients():
            grads = torch.autograd.grad(outputs=[logits.sum()], inputs=inputs, create_graph=True, only_inputs=True)
        penalty = sum(grad.square().sum([1, 2, 3]) for grad in grads)
        term = penalty * (self.r1_gamma / 2)
        training_stats.report('Loss/r1_penalty', penalty)
        training_stats.report('Loss/D/reg', term)
        return term

    def _density_ws(self, gen_z, gen_c, swapping_prob, mix):
        # One swap decision for the whole batch here, unlike run_G's per-sample draw.
        c_gen_conditioning = self._conditioning(gen_c, swapping_prob, per_sample=False)
        ws = self.G.mapping(gen_z, c_gen_conditioning, update_emas=False)
        # Style mixing as in run_G (docs/compat.md).
        return self._mix_styles(ws, gen_z, gen_c) if mix else ws

    def _sigma_pairs(self, ws, initial, perturbed):
        """Raw densities at two matching point sets ([N, M, 3] each); view directions are ignored by the decoder."""
        points = torch.cat([initial, perturbed], dim=1)
        sigma = self.G.sample_mixed(points, torch.randn_like(points), ws, update_emas=False)['sigma']
        num = initial.shape[1]
        return sigma[:, :num], sigma[:, num:]

    def _density_regularization(self, gen_z, gen_c, swapping_prob, gain):
        options = self.G.rendering_kwargs
        reg_type = options['reg_type']
        if options.get('density_reg', 0) <= 0 or reg_type not in ['l1', 'monotonic-detach', 'monotonic-fixed']:
            return # 'l1-alt' and 'total-variation' are accepted but compute nothing.

        with torch.autograd.profiler.record_function('Greg_forward'):
            if reg_type == 'l1':
                step = options['density_reg_p_dist']
            else:
                # Densities may not grow one voxel step (of a 256 grid over the box) towards -z.
                ws = self._density_ws(gen_z, gen_c, swapping_prob, mix=False)
                initial = torch.rand([ws.shape[0], 2000, 3], device=ws.device) * 2 - 1
                perturbed = initial + torch.tensor([0, 0, -1], device=ws.device) * (1 / 256) * options['box_warp']
                sigma_initial, sigma_perturbed = self._sigma_pairs(ws, initial, perturbed)
                if reg_type == 'monotonic-detach':
                    sigma_initial = sigma_initial.detach()
                loss_monotonic = torch.relu(sigma_initial - sigma_perturbed).mean() * 10
                self._backward(loss_monotonic, gain)
                step = options['box_warp'] / 256

            # Density changes little under a small random shift of the sample points.
            ws = self._density_ws(gen_z, gen_c, swapping_prob, mix=True)
            initial = torch.rand([ws.shape[0], 1000, 3], device=ws.device) * 2 - 1
            perturbed = initial + torch.randn_like(initial) * step
            sigma_initial, sigma_perturbed = self._sigma_pairs(ws, initial, perturbed)
            loss_tv = torch.nn.functional.l1_loss(sigma_initial, sigma_perturbed) * options['density_reg']
        self._backward(loss_tv, gain)

#----------------------------------------------------------------------------
