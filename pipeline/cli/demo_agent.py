"""The Acme side of `rlpipe demo`: gymnasium's CartPole as a dm_env environment and a tabular
Q-learning agent as an `acme.core.Actor`.

The tabular agent looks at the pole's angle and angular velocity and learns CartPole in a
few hundred episodes (returns from about 20 to 500). The adapter is rlpipe's own because Acme
0.2.4's `acme.wrappers` needs chex and predates gymnasium 1.x's five-value `step`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.cli.errors import install_hint

try:
    import acme
    import dm_env
    import gymnasium
    from dm_env import specs
except ImportError as error:  # pragma: no cover - the acme extra is installed in CI
    raise ImportError(
        f"`rlpipe demo` needs dm-acme, dm-env and gymnasium: {install_hint('acme')} ({error})"
    ) from error

# -- the environment: gymnasium behind dm_env ------------------------------------------------


class GymnasiumEnvironment(dm_env.Environment):
    """A gymnasium environment with a Box observation space and a Discrete action space, as a
    dm_env.Environment: `reset()` gives a FIRST timestep, `step()` MID timesteps and a LAST one
    when the episode terminates (discount 0) or is truncated (discount 1); stepping after a
    LAST timestep starts a new episode, as dm_env requires. Rewards are float64 scalars."""

    def __init__(self, env: Any, seed: int | None = None) -> None:
        if not isinstance(env.action_space, gymnasium.spaces.Discrete):
            raise ValueError(f"needs a Discrete action space, got {env.action_space}")
        if not isinstance(env.observation_space, gymnasium.spaces.Box):
            raise ValueError(f"needs a Box observation space, got {env.observation_space}")
        self._env = env
        self._seed = seed
        self._needs_reset = True
        space = env.observation_space
        self._observation_spec = specs.BoundedArray(
            space.shape, space.dtype, space.low, space.high, name="observation"
        )
        self._action_spec = specs.DiscreteArray(int(env.action_space.n), name="action")

    def reset(self) -> dm_env.TimeStep:
        observation, _ = self._env.reset(seed=self._seed)
        self._seed = None  # seed the first episode only; later ones continue the stream
        self._needs_reset = False
        return dm_env.restart(observation)

    def step(self, action: Any) -> dm_env.TimeStep:
        if self._needs_reset:
            return self.reset()
        observation, reward, terminated, truncated, _ = self._env.step(int(action))
        reward = float(reward)
        if terminated:
            self._needs_reset = True
            return dm_env.termination(reward, observation)
        if truncated:
            self._needs_reset = True
            return dm_env.truncation(reward, observation)
        return dm_env.transition(reward, observation)

    def observation_spec(self) -> specs.BoundedArray:
        return self._observation_spec

    def action_spec(self) -> specs.DiscreteArray:
        return self._action_spec

    def close(self) -> None:
        self._env.close()


# -- the agent: tabular Q-learning -----------------------------------------------------------


class Discretizer:
    """Maps an observation vector to a cell of a grid: per dimension, the index of the bin
    (given by its inner edges) the value falls in. A dimension with no edges is ignored."""

    def __init__(self, edges: Sequence[Sequence[float] | np.ndarray]) -> None:
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges]
        self.shape = tuple(len(e) + 1 for e in self.edges)

    def __call__(self, observation: np.ndarray) -> tuple[int, ...]:
        return tuple(
            int(np.searchsorted(edges, observation[i])) if len(edges) else 0
            for i, edges in enumerate(self.edges)
        )


def cartpole_discretizer() -> Discretizer:
    """CartPole's grid: the cart's position and speed ignored, the pole's angle in 6 bins within
    +-0.21 rad (the failure angle), its angular velocity in 12 bins within +-2 rad/s."""
    return Discretizer(
        [[], [], np.linspace(-0.21, 0.21, 7)[1:-1], np.linspace(-2.0, 2.0, 13)[1:-1]]
    )


class TabularQActor(acme.core.Actor):
    """Q-learning over a discretized observation, as an Acme Actor.

    `select_action` is epsilon-greedy (ties broken towards action 0); `observe` records the
    transition; `update` applies one Q-learning step to it (the EnvironmentLoop calls `update`
    only when `should_update=True`, so an evaluation loop does not learn). Epsilon and the
    learning rate decay per episode: eps_k = max(min_epsilon, epsilon_decay^k), alpha_k =
    max(min_learning_rate, learning_rate_decay^k).
    """

    def __init__(
        self,
        num_actions: int,
        discretize: Callable[[np.ndarray], tuple[int, ...]],
        grid_shape: tuple[int, ...],
        *,
        discount: float = 0.99,
        epsilon_decay: float = 0.97,
        min_epsilon: float = 0.0,
        learning_rate_decay: float = 0.98,
        min_learning_rate: float = 0.02,
        seed: int | None = None,
        q_table: np.ndarray | None = None,
        greedy: bool = False,
    ) -> None:
        self.q = np.zeros((*grid_shape, num_actions)) if q_table is None else q_table
        self.num_actions = num_actions
        self.discretize = discretize
        self.discount = discount
        self.epsilon_decay = epsilon_decay
        self.min_epsilon = min_epsilon
        self.learning_rate_decay = learning_rate_decay
        self.min_learning_rate = min_learning_rate
        self.greedy = greedy
        self.episodes = 0
        self._rng = np.random.default_rng(seed)
        self._state: tuple[int, ...] = ()
        self._transition: tuple[tuple[int, ...], int, float, float, tuple[int, ...]] | None = None

    @property
    def epsilon(self) -> float:
        """The exploration rate of the current episode (0 when greedy)."""
        if self.greedy:
            return 0.0
        return max(self.min_epsilon, self.epsilon_decay ** max(self.episodes - 1, 0))

    @property
    def learning_rate(self) -> float:
        """The step size of the current episode's updates."""
        return max(self.min_learning_rate, self.learning_rate_decay ** max(self.episodes - 1, 0))

    def evaluation_actor(self) -> TabularQActor:
        """A greedy actor reading this actor's Q-table (it sees the learning as it happens)."""
        return TabularQActor(
            self.num_actions, self.discretize, self.q.shape[:-1], q_table=self.q, greedy=True
        )

    def select_action(self, observation: np.ndarray) -> np.int32:
        if not self.greedy and self._rng.random() < self.epsilon:
            return np.int32(self._rng.integers(self.num_actions))
        return np.int32(np.argmax(self.q[self._state]))

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        self.episodes += 1
        self._state = self.discretize(timestep.observation)
        self._transition = None

    def observe(self, action: Any, next_timestep: dm_env.TimeStep) -> None:
        next_state = self.discretize(next_timestep.observation)
        self._transition = (
            self._state,
            int(action),
            float(next_timestep.reward),
            float(next_timestep.discount),
            next_state,
        )
        self._state = next_state

    def save(self) -> dict[str, Any]:
        """The actor's state (Acme's Saveable): Q-table, episode count, random state."""
        return {"q": self.q.copy(), "episodes": self.episodes, "rng": self._rng.bit_generator.state}

    def restore(self, state: dict[str, Any]) -> None:
        """Goes on from `save()`'s state (the Q-table is updated in place: greedy actors
        made by `evaluation_actor` keep reading it)."""
        self.q[...] = state["q"]
        self.episodes = state["episodes"]
        self._rng.bit_generator.state = state["rng"]

    def update(self, wait: bool = False) -> None:
        if self._transition is None:
            return
        state, action, reward, discount, next_state = self._transition
        self._transition = None
        target = reward + self.discount * discount * float(self.q[next_state].max())
        cell = (*state, action)
        self.q[cell] += self.learning_rate * (target - self.q[cell])


__all__ = ["Discretizer", "GymnasiumEnvironment", "TabularQActor", "cartpole_discretizer"]
