"""Pointwise log-likelihood of a finished ``pyro.infer.MCMC`` run, for ArviZ's ``log_likelihood`` group.

The model is run once, vectorized over every draw with ``pyro.infer.Predictive``; the log density of every
observed site and the log-factor of every factor site (``pyro.factor``, :func:`pyro_ebm.energy_factor`) is
kept per draw and per plate element, and dims are named after Pyro's plates.
"""

from __future__ import annotations

import torch

__all__ = ["pointwise_log_likelihood"]

_PREDICTIVE_PLATE = "_num_predictive_samples"  # the draws plate of pyro.infer.Predictive


def _site_dims(name, frames, shape, batch_ndim, skip=()):
    """Dimension names of a site of ``shape`` (batch + event): plate names where Pyro knows them."""
    names = [f"{name}_dim_{i}" for i in range(len(shape))]
    known = False
    for f in frames:
        if f.dim is not None and f.name not in skip and 0 <= batch_ndim + f.dim < len(shape):
            names[batch_ndim + f.dim] = f.name
            known = True
    return names if known else None


def pointwise_log_likelihood(mcmc, skip_sites=()):
    """Pointwise log-likelihood of the observed and factor sites of a finished ``pyro.infer.MCMC`` run.

    The model is run once, vectorized over every draw with ``pyro.infer.Predictive``; returns
    ``(log_likelihood, observed_data, posterior_dims, observed_dims)`` (numpy dicts, dims from plates).
    """
    import pyro
    from pyro.infer import Predictive

    skip_sites = set(skip_sites)
    samples = {k: v for k, v in mcmc.get_samples(group_by_chain=True).items() if k not in skip_sites}
    chains, n_draws = next(iter(samples.values())).shape[:2]
    flat = {k: v.reshape((chains * n_draws,) + tuple(v.shape[2:])) for k, v in samples.items()}
    model = mcmc.kernel.model
    args, kwargs = mcmc._args or (), mcmc._kwargs or {}
    with pyro.poutine.block():
        trace = Predictive(model, posterior_samples=flat, parallel=True).get_vectorized_trace(*args, **kwargs)
    log_lik, observed, post_dims, obs_dims = {}, {}, {}, {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or name in skip_sites:
            continue
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        draws_dim = next((f.dim for f in frames if f.name == _PREDICTIVE_PLATE), None)
        if name in samples:  # a latent site (Predictive conditions it on the draws)
            shape = tuple(samples[name].shape[2:])
            batch_ndim = len(shape) - len(site["fn"].event_shape)
            dims = _site_dims(name, frames, shape, batch_ndim, skip=(_PREDICTIVE_PLATE,))
            if dims:
                post_dims[name] = dims
            continue
        if not site["is_observed"] or draws_dim is None:
            continue
        with torch.no_grad():
            lp = site["fn"].log_prob(site["value"])
        lp = lp.expand(torch.broadcast_shapes(lp.shape, (1,) * -draws_dim))
        lp = lp.reshape(lp.shape[lp.dim() + draws_dim :])  # [draws, *plates-or-1]
        keep = [i for i in range(1, lp.dim()) if any(f.dim == i - lp.dim() for f in frames)]
        names = [next(f.name for f in frames if f.dim == i - lp.dim()) for i in keep]
        drop = [i for i in range(1, lp.dim()) if i not in keep]
        lp = lp.squeeze(drop) if drop else lp
        log_lik[name] = lp.reshape((chains, n_draws) + tuple(lp.shape[1:])).cpu().numpy()
        if names:
            obs_dims[name] = names
        value, event_dim = site["value"], len(site["fn"].event_shape)
        real_obs = not site["infer"].get("is_auxiliary")  # an observation, not a factor
        if real_obs and event_dim == 0 and isinstance(value, torch.Tensor) and value.dim() == len(names):
            observed[name] = value.detach().cpu().numpy()
    return log_lik, observed, post_dims, obs_dims
