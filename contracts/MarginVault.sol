// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Governed.sol";
import {QuorumOracle} from "./QuorumOracle.sol";
import {RiskGate, inputFeeds} from "./RiskGate.sol";

interface IERC20Minimal {
    function decimals() external view returns (uint8);
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @title MarginVault
/// @notice A reference perpetual-style margin vault: collateral moves and positions grow only
/// on fresh attested data and RiskGate's initial margin (docs/contracts.md, "MarginVault").
///
/// Markets are isolated: an account's collateral and position are per market, and a market
/// reads only its own feeds (its price feed, and the inputs RiskGate's market of the same id
/// names), so a stale or tripped ETH feed never blocks a BTC market. The pool (funded by
/// anyone, `fundPool`) is every position's counterparty: it pays profits, takes losses, and
/// absorbs bad debt; it may go negative (a deficit), so that settling a risk-reducing action
/// never fails for want of pool funds.
///
/// Units. The collateral is a USD token with `collateralDecimals` (<= 18; 6 or 18 typically).
/// Sizes are in the market's base units with 18 decimals (1 BTC = 1e18), signed (> 0 long).
/// A price is the oracle's attested value of the market's price feed (USD per coin, e.g. 8
/// decimals). A position's value in collateral units is
///     value(size, price) = size * price / 10^(18 + priceDecimals - collateralDecimals)
/// (signed, truncated toward zero). openNotional is the signed value paid in (long > 0,
/// short < 0); pnl = value(size, price) - openNotional; equity = collateral + pnl;
/// notional = |value|; a requirement is notional * bps / 10000, rounded up.
///
/// Rules.
///  - Risk-increasing (open, increase, withdraw): counted against the account's action limit,
///    then the price feed must be untripped, no older than the RiskGate market's maxAge (and
///    the feed's heartbeat) and positive; RiskGate.checkAction(market, true) must pass (its
///    inputs fresh, untripped, and non-negative but for a funding rate); no feed of the market
///    may be cooling down; and afterwards equity >= initial requirement. A withdrawal is checked even with no position:
///    collateral leaves only on fresh attestations.
///  - Risk-reducing (deposit, reduce, close) always pass: no data is needed to deposit; reduce
///    and close settle at the latest attested price whatever its age, but while that price is
///    stale, tripped or not positive a profit is not credited (a loss is): a tripped breaker
///    holds back a value known to be out of date, and paying profit at it would let anyone
///    drain the pool.
///  - Liquidation (anyone, any account): at the attested price, which must be fresh and
///    untripped; only when equity < maintenance requirement (RiskGate's maintenance margin,
///    whatever the state of its inputs). The whole position is closed; the liquidator gets
///    `liquidationRewardBps` of the notional, from the account's remaining collateral first,
///    then from the pool.
///
/// Behavioural heuristics (governance, `setParameters`):
///  - action limit: at most `maxActionsPerWindow` risk-increasing actions per account in each
///    window of `windowBlocks` blocks (windows are block.number / windowBlocks; 0 = no limit);
///  - cool-down: after the vault has seen a feed of a market in trouble (tripped, or stale for
///    the market), risk-increasing actions on that market wait for the first value the oracle
///    stores after the round it was seen in, then `cooldownSeconds` from the moment the feed
///    recovered. The oracle keeps no trace of a cleared breaker (after two in-limit reports, or
///    after a reset and the re-anchoring report, its state is that of a feed that never
///    tripped) and staleness is a function of the clock, so the vault records what it sees, per
///    feed: the round id it saw the trouble at, then the recovery time. A tripped breaker holds
///    the round id, so round `seen + 1` is exactly the value that cleared it (or re-anchored it
///    after a reset). The recovery time is that value's observation time when the feed's
///    history still holds it, else the observation time of the latest value at the first call
///    that finds the feed usable again and records it (later than the true recovery, never
///    later than that call). Once recorded it is fixed: however often the feed lands
///    afterwards, and whatever its history depth (0 included), new risk waits at most
///    `cooldownSeconds` from it. Trouble and recovery are recorded by `syncFeeds` (anyone: a
///    keeper calls it on BreakerTripped, or each poll) and by reduce and close (for the price
///    feed they read); a refused action reverts and so records nothing: until a recovery is
///    recorded, a feed that keeps no history measures the cool-down from its latest value.
///
/// Pull path (`submitAndCall`): a trader or keeper brings a report the committee signed and a
/// vault action in one transaction, as Pyth's update-then-act and Chainlink Data Streams'
/// verify-in-the-same-call do, so the action does not wait for the committee's next push.
contract MarginVault is Owned {
    struct Market {
        uint16 priceFeed;
        uint8 priceDecimals;
        uint8 valueExponent; // 18 + priceDecimals - collateralDecimals
        bool listed;
    }

    struct Position {
        int128 size; // base units, 18 decimals; > 0 long
        int128 openNotional; // collateral units paid in (long > 0, short < 0)
    }

    struct Parameters {
        uint32 maxActionsPerWindow;
        uint32 windowBlocks; // 0: no action limit
        uint32 cooldownSeconds;
        uint16 liquidationRewardBps;
    }

    /// One account in one market, at the latest attested price and margins (never reverts on
    /// market data; `priceUsable` and RiskGate's `margins(...).usable` say whether to trust it).
    struct AccountView {
        int256 size;
        int256 openNotional;
        uint256 collateral;
        int256 price;
        bool priceUsable;
        int256 equity;
        uint256 initialRequirement;
        uint256 maintenanceRequirement;
    }

    struct Activity {
        uint64 window;
        uint32 count;
    }

    error UnsupportedCollateralDecimals(uint8 decimals);
    error UnsupportedDecimals(uint16 feedIndex, uint8 decimals);
    error MarketNotListed(bytes32 marketId);
    error InvalidActionLimit(uint32 maxActionsPerWindow, uint32 windowBlocks);
    error RewardTooHigh(uint16 rewardBps, uint16 maxRewardBps);
    error ZeroAmount();
    error ZeroSize();
    error SizeTooLarge(uint256 size, uint256 maxSize);
    error NotionalTooLarge(int256 openNotional);
    error PositionOpen(bytes32 marketId, int256 size);
    error NoPosition(bytes32 marketId);
    error ReduceTooLarge(uint256 amount, uint256 size);
    error InsufficientCollateral(uint256 amount, uint256 collateral);
    error InsufficientMargin(int256 equity, uint256 required);
    error NotLiquidatable(int256 equity, uint256 required);
    error FeedTripped(uint16 feedIndex);
    error FeedStale(uint16 feedIndex, uint32 observedAt, uint32 maxAge);
    error NonPositivePrice(uint16 feedIndex, int256 price);
    error ActionLimitReached(address account, uint256 window, uint32 maxActionsPerWindow);
    error CoolingDown(uint16 feedIndex, uint256 until);
    error AwaitingFreshRound(uint16 feedIndex, uint32 troubleRound);
    error TransferFailed(address to, uint256 amount);
    error ActionNotAllowed(bytes4 selector);

    event MarketListed(bytes32 indexed marketId, uint16 priceFeed, uint8 priceDecimals);
    event ParametersSet(Parameters parameters);
    event Deposited(address indexed account, bytes32 indexed marketId, uint256 amount);
    event Withdrawn(address indexed account, bytes32 indexed marketId, uint256 amount);
    event PoolFunded(address indexed from, uint256 amount);
    /// realizedPnl is what was credited (a profit forfeited on unusable data shows as 0).
    event PositionChanged(
        address indexed account, bytes32 indexed marketId, int256 sizeDelta, int256 size, int256 price, int256 realizedPnl
    );
    event Liquidated(
        address indexed account,
        bytes32 indexed marketId,
        address indexed liquidator,
        int256 size,
        int256 price,
        uint256 reward,
        uint256 badDebt
    );
    event BadDebt(address indexed account, bytes32 indexed marketId, uint256 amount);
    event FeedTroubleSeen(uint16 indexed feedIndex, uint32 roundId);
    /// The vault found the feed usable again after `troubleRound`; its cool-down runs from `recoveredAt`.
    event FeedRecoverySeen(uint16 indexed feedIndex, uint32 troubleRound, uint32 recoveredAt);
    event FeedTroubleCleared(uint16 indexed feedIndex, uint32 troubleRound);

    uint16 public constant MAX_REWARD_BPS = 1_000;
    uint256 public constant SIZE_DECIMALS = 18;
    /// Keeps size * price far inside int256 and the open notional inside int128.
    uint256 public constant MAX_SIZE = 1 << 96;
    uint16 private constant NO_FEED = type(uint16).max;
    uint256 private constant BPS = 10_000;

    QuorumOracle public immutable oracle;
    RiskGate public immutable riskGate;
    IERC20Minimal public immutable collateralToken;
    uint8 public immutable collateralDecimals;

    /// Collateral held for the pool: positive = surplus, negative = deficit.
    int256 public pool;
    Parameters private s_parameters;
    mapping(bytes32 => Market) private s_markets;
    mapping(address => mapping(bytes32 => Position)) private s_positions;
    mapping(address => mapping(bytes32 => uint256)) private s_collateral;
    mapping(address => Activity) private s_activity;
    /// feed >> 2 => four 64-bit lanes, each (recoveredAt u32 << 32 | troubleRound u32): the round
    /// id at which the vault last saw the feed in trouble (0: none) and the time it recorded
    /// the feed's recovery from it (0: not yet). Packed so a market's feeds cost few cold loads.
    mapping(uint256 => uint256) private s_watch;

    constructor(RiskGate riskGate_, IERC20Minimal collateral_) {
        riskGate = riskGate_;
        oracle = riskGate_.oracle();
        collateralToken = collateral_;
        uint8 d = collateral_.decimals();
        if (d > 18) revert UnsupportedCollateralDecimals(d);
        collateralDecimals = d;
    }

    // ---------------------------------------------------------------- governance

    /// Lists (or re-points) a market: its id is RiskGate's market id (UnknownMarket if RiskGate
    /// has no curve for it), priced by `priceFeed` (UnknownFeed if the oracle has none).
    function listMarket(bytes32 marketId, uint16 priceFeed) external onlyOwner {
        riskGate.marketInputs(marketId);
        uint8 d = oracle.feedDecimals(priceFeed);
        if (d > 18) revert UnsupportedDecimals(priceFeed, d);
        s_markets[marketId] = Market(priceFeed, d, uint8(18 + d - collateralDecimals), true);
        emit MarketListed(marketId, priceFeed, d);
    }

    function setParameters(Parameters calldata p) external onlyOwner {
        if (p.windowBlocks != 0 && p.maxActionsPerWindow == 0) {
            revert InvalidActionLimit(p.maxActionsPerWindow, p.windowBlocks);
        }
        if (p.liquidationRewardBps > MAX_REWARD_BPS) revert RewardTooHigh(p.liquidationRewardBps, MAX_REWARD_BPS);
        s_parameters = p;
        emit ParametersSet(p);
    }

    // ---------------------------------------------------------------- collateral

    function deposit(bytes32 marketId, uint256 amount) external {
        _listed(marketId);
        if (amount == 0) revert ZeroAmount();
        _pull(amount);
        s_collateral[msg.sender][marketId] += amount;
        emit Deposited(msg.sender, marketId, amount);
    }

    function withdraw(bytes32 marketId, uint256 amount) external {
        Market memory m = _listed(marketId);
        if (amount == 0) revert ZeroAmount();
        (int256 price, uint256 initialBps) = _beforeRiskIncrease(marketId, m);
        uint256 collateral = s_collateral[msg.sender][marketId];
        if (amount > collateral) revert InsufficientCollateral(amount, collateral);
        s_collateral[msg.sender][marketId] = collateral - amount;
        _requireInitialMargin(msg.sender, marketId, m, price, initialBps);
        _push(msg.sender, amount);
        emit Withdrawn(msg.sender, marketId, amount);
    }

    /// Anyone may add to the pool that pays profits and absorbs bad debt.
    function fundPool(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        _pull(amount);
        pool += int256(amount);
        emit PoolFunded(msg.sender, amount);
    }

    // ---------------------------------------------------------------- positions

    /// Opens a position of `size` (> 0 long, < 0 short) on a flat account.
    function open(bytes32 marketId, int256 size) external {
        Market memory m = _listed(marketId);
        if (size == 0) revert ZeroSize();
        _checkSize(_abs(size));
        int256 current = s_positions[msg.sender][marketId].size;
        if (current != 0) revert PositionOpen(marketId, current);
        _increase(marketId, m, size);
    }

    /// Adds `amount` base units to the position, on its side.
    function increase(bytes32 marketId, uint256 amount) external {
        Market memory m = _listed(marketId);
        if (amount == 0) revert ZeroSize();
        int256 current = s_positions[msg.sender][marketId].size;
        if (current == 0) revert NoPosition(marketId);
        _checkSize(amount);
        _increase(marketId, m, current > 0 ? int256(amount) : -int256(amount));
    }

    /// Takes `amount` base units off the position (all of it closes it). Always passes.
    function reduce(bytes32 marketId, uint256 amount) external {
        if (amount == 0) revert ZeroSize();
        _reduce(marketId, amount);
    }

    function close(bytes32 marketId) external {
        int256 size = s_positions[msg.sender][marketId].size;
        _reduce(marketId, _abs(size));
    }

    /// Closes `account`'s whole position at the attested price when its equity is below the
    /// maintenance requirement; the caller gets the liquidation reward.
    function liquidate(address account, bytes32 marketId) external {
        Market memory m = _listed(marketId);
        Position memory p = s_positions[account][marketId];
        if (p.size == 0) revert NoPosition(marketId);
        QuorumOracle.FeedStatus memory s = oracle.feedStatus(m.priceFeed);
        _requireUsablePrice(m.priceFeed, s, riskGate.marketInputs(marketId).maxAge);
        int256 value = _value(p.size, s.value, m);
        (, uint256 maintenanceBps) = riskGate.checkAction(marketId, false);
        int256 equity = int256(s_collateral[account][marketId]) + value - p.openNotional;
        uint256 required = _requirement(value, maintenanceBps);
        if (equity >= int256(required)) revert NotLiquidatable(equity, required);

        delete s_positions[account][marketId];
        uint256 badDebt = _settle(account, marketId, value - p.openNotional);
        uint256 reward = _payReward(account, marketId, value);
        emit Liquidated(account, marketId, msg.sender, p.size, s.value, reward, badDebt);
    }

    // ---------------------------------------------------------------- pull path

    /// @notice Submits a signed report to the oracle, then runs `action` (the ABI-encoded call
    /// of one of this vault's own actions: deposit, withdraw, open, increase, reduce, close,
    /// liquidate) with the caller as its msg.sender, in one transaction. Returns how many of the
    /// report's feeds the oracle stored.
    /// @dev Safety model (docs/contracts.md, "MarginVault", "Pull path"):
    ///  - The report is the oracle's to judge: `QuorumOracle.submit` checks the committee's
    ///    signatures over the EIP-712 digest (this chain, this oracle), the config digest, the
    ///    pause and each feed's bounds, future skew and heartbeat; any refusal reverts the
    ///    whole call with the oracle's own error (SignerMismatch, ConfigDigestMismatch, Paused,
    ///    ObservationExpired, ...), and no action runs.
    ///  - A report cannot make data older: the oracle stores a feed only if it is newer than the
    ///    stored one and skips the others without reverting. So a report someone else landed
    ///    first (a front-runner, the committee's own push) makes the submit a no-op and the
    ///    action runs on what is stored, which is at least as new; griefing by front-running
    ///    costs the griefer gas and changes nothing for the caller.
    ///  - The action is the vault's own code run by delegatecall into this contract, so its
    ///    msg.sender is the caller and every check applies as for a direct call: the action
    ///    limit, fresh untripped data no older than the market's maxAge, RiskGate, the cool-down,
    ///    the initial margin. A caller can only do what it could do directly just after
    ///    submitting the report itself; it cannot act for another account, and any other
    ///    selector (governance, syncFeeds, fundPool, submitAndCall itself) is ActionNotAllowed.
    function submitAndCall(
        bytes32 configDigest,
        uint32 epoch,
        uint32 round,
        bytes calldata updates,
        uint256 signerBitmask,
        bytes calldata signatures,
        bytes calldata action
    ) external returns (uint256 feedsStored) {
        _requireVaultAction(action);
        feedsStored = oracle.submit(configDigest, epoch, round, updates, signerBitmask, signatures);
        (bool ok, bytes memory ret) = address(this).delegatecall(action);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    // ---------------------------------------------------------------- heuristics

    /// Records which feeds of the market are in trouble now (tripped, or stale for the
    /// market), so the cool-down applies when they recover. Anyone may call it.
    function syncFeeds(bytes32 marketId) external {
        Market memory m = _listed(marketId);
        RiskGate.Inputs memory inputs = riskGate.marketInputs(marketId);
        uint16[7] memory feeds = _feeds(m, inputs);
        for (uint256 i; i < feeds.length; ++i) {
            if (feeds[i] == NO_FEED) continue;
            _record(feeds[i], oracle.feedStatus(feeds[i]), inputs.maxAge);
        }
    }

    // ---------------------------------------------------------------- reads

    function market(bytes32 marketId) external view returns (Market memory) {
        return s_markets[marketId];
    }

    function parameters() external view returns (Parameters memory) {
        return s_parameters;
    }

    function position(address account, bytes32 marketId) external view returns (Position memory) {
        return s_positions[account][marketId];
    }

    function collateralOf(address account, bytes32 marketId) external view returns (uint256) {
        return s_collateral[account][marketId];
    }

    /// The round id at which the vault last saw `feed` in trouble (0: none pending).
    function troubleRound(uint16 feed) external view returns (uint32 round) {
        (round,) = _watch(feed);
    }

    /// When the vault recorded `feed` usable again after its trouble (0: not yet, or none
    /// pending); the cool-down runs `cooldownSeconds` from it.
    function recoveredAt(uint16 feed) external view returns (uint32 time) {
        (, time) = _watch(feed);
    }

    /// The account's actions counted in the current window.
    function actionsInWindow(address account) external view returns (uint256 window, uint32 count) {
        uint32 blocks = s_parameters.windowBlocks;
        if (blocks == 0) return (0, 0);
        Activity memory a = s_activity[account];
        window = block.number / blocks;
        count = a.window == window ? a.count : 0;
    }

    function accountView(address account, bytes32 marketId) external view returns (AccountView memory v) {
        Market memory m = _listed(marketId);
        Position memory p = s_positions[account][marketId];
        (uint256 initialBps, uint256 maintenanceBps) = riskGate.checkAction(marketId, false);
        QuorumOracle.FeedStatus memory s = oracle.feedStatus(m.priceFeed);
        int256 value = _value(p.size, s.value, m);
        v.size = p.size;
        v.openNotional = p.openNotional;
        v.collateral = s_collateral[account][marketId];
        v.price = s.value;
        v.priceUsable = _fresh(s, riskGate.marketInputs(marketId).maxAge);
        v.equity = int256(v.collateral) + value - p.openNotional;
        v.initialRequirement = _requirement(value, initialBps);
        v.maintenanceRequirement = _requirement(value, maintenanceBps);
    }

    // ---------------------------------------------------------------- internals

    function _listed(bytes32 marketId) private view returns (Market memory m) {
        m = s_markets[marketId];
        if (!m.listed) revert MarketNotListed(marketId);
    }

    /// The actions submitAndCall may run: the vault's own trading actions, nothing else.
    function _requireVaultAction(bytes calldata action) private pure {
        bytes4 selector = action.length >= 4 ? bytes4(action[:4]) : bytes4(0);
        if (
            selector != this.open.selector && selector != this.increase.selector && selector != this.reduce.selector
                && selector != this.close.selector && selector != this.withdraw.selector
                && selector != this.liquidate.selector && selector != this.deposit.selector
        ) revert ActionNotAllowed(selector);
    }

    function _checkSize(uint256 size) private pure {
        if (size > MAX_SIZE) revert SizeTooLarge(size, MAX_SIZE);
    }

    /// The checks every risk-increasing action passes first; returns the fresh price and
    /// RiskGate's initial margin.
    function _beforeRiskIncrease(bytes32 marketId, Market memory m) private returns (int256 price, uint256 initialBps) {
        _countAction(msg.sender);
        RiskGate.Inputs memory inputs = riskGate.marketInputs(marketId);
        QuorumOracle.FeedStatus memory s = oracle.feedStatus(m.priceFeed);
        _requireUsablePrice(m.priceFeed, s, inputs.maxAge);
        (initialBps,) = riskGate.checkAction(marketId, true);
        uint16[7] memory feeds = _feeds(m, inputs);
        for (uint256 i; i < feeds.length; ++i) {
            if (feeds[i] == NO_FEED) continue;
            (uint32 seen, uint32 recovered) = _watch(feeds[i]);
            if (seen != 0) _checkCooldown(feeds[i], seen, recovered, i == 0 ? s : oracle.feedStatus(feeds[i]));
        }
        price = s.value;
    }

    function _increase(bytes32 marketId, Market memory m, int256 delta) private {
        (int256 price, uint256 initialBps) = _beforeRiskIncrease(marketId, m);
        Position storage p = s_positions[msg.sender][marketId];
        int256 size = p.size + delta;
        _checkSize(_abs(size));
        p.size = int128(size);
        // |size| <= 2^96 and the price is int64: the value fits int256; its int128 cast is checked.
        p.openNotional = _toInt128(p.openNotional + _value(delta, price, m));
        _requireInitialMargin(msg.sender, marketId, m, price, initialBps);
        emit PositionChanged(msg.sender, marketId, delta, size, price, 0);
    }

    function _reduce(bytes32 marketId, uint256 amount) private {
        Market memory m = _listed(marketId);
        Position memory p = s_positions[msg.sender][marketId];
        if (p.size == 0) revert NoPosition(marketId);
        uint256 held = _abs(p.size);
        if (amount > held) revert ReduceTooLarge(amount, held);
        QuorumOracle.FeedStatus memory s = oracle.feedStatus(m.priceFeed);
        uint32 maxAge = riskGate.marketInputs(marketId).maxAge;
        bool usable = _fresh(s, maxAge) && s.value > 0;
        _record(m.priceFeed, s, maxAge);

        int256 closed = p.size > 0 ? int256(amount) : -int256(amount); // on the position's side
        int256 basis = amount == held ? p.openNotional : p.openNotional * int256(amount) / int256(held);
        int256 pnl = _value(closed, s.value, m) - basis;
        if (!usable && pnl > 0) pnl = 0;
        s_positions[msg.sender][marketId] = Position(int128(p.size - closed), int128(p.openNotional - basis));
        _settle(msg.sender, marketId, pnl);
        emit PositionChanged(msg.sender, marketId, -closed, p.size - closed, s.value, pnl);
    }

    /// Credits `pnl` to the account's collateral against the pool; a loss beyond the
    /// collateral is bad debt, which the pool absorbs.
    function _settle(address account, bytes32 marketId, int256 pnl) private returns (uint256 badDebt) {
        int256 after_ = int256(s_collateral[account][marketId]) + pnl;
        int256 toPool = -pnl;
        if (after_ < 0) {
            badDebt = uint256(-after_);
            toPool += after_;
            after_ = 0;
            emit BadDebt(account, marketId, badDebt);
        }
        pool += toPool;
        s_collateral[account][marketId] = uint256(after_);
    }

    /// The liquidation reward on a position of `value`: from the account's collateral first,
    /// then from the pool; paid to the caller.
    function _payReward(address account, bytes32 marketId, int256 value) private returns (uint256 reward) {
        reward = _requirement(value, s_parameters.liquidationRewardBps);
        uint256 collateral = s_collateral[account][marketId];
        uint256 fromAccount = reward < collateral ? reward : collateral;
        s_collateral[account][marketId] = collateral - fromAccount;
        pool -= int256(reward - fromAccount);
        if (reward != 0) _push(msg.sender, reward);
    }

    function _requireInitialMargin(address account, bytes32 marketId, Market memory m, int256 price, uint256 bps)
        private
        view
    {
        Position memory p = s_positions[account][marketId];
        int256 value = _value(p.size, price, m);
        int256 equity = int256(s_collateral[account][marketId]) + value - p.openNotional;
        uint256 required = _requirement(value, bps);
        if (equity < int256(required)) revert InsufficientMargin(equity, required);
    }

    function _countAction(address account) private {
        Parameters memory params = s_parameters;
        if (params.windowBlocks == 0) return;
        uint64 window = uint64(block.number / params.windowBlocks);
        Activity memory a = s_activity[account];
        if (a.window != window) {
            s_activity[account] = Activity(window, 1);
        } else if (a.count >= params.maxActionsPerWindow) {
            revert ActionLimitReached(account, window, params.maxActionsPerWindow);
        } else {
            s_activity[account].count = a.count + 1;
        }
    }

    /// Refuses while a feed seen in trouble has not been followed by a new value, or the
    /// cool-down since its recovery has not run out; otherwise forgets the trouble.
    function _checkCooldown(uint16 feed, uint32 seen, uint32 recorded, QuorumOracle.FeedStatus memory s) private {
        if (s.roundId <= seen) revert AwaitingFreshRound(feed, seen);
        uint256 until = uint256(recorded != 0 ? recorded : _recoveryTime(feed, seen, s)) + s_parameters.cooldownSeconds;
        if (block.timestamp < until) revert CoolingDown(feed, until);
        _setWatch(feed, 0, 0);
        emit FeedTroubleCleared(feed, seen);
    }

    /// Records trouble (a feed unusable for the market at a round not yet recorded), or the
    /// recovery from recorded trouble (the feed usable at a later round), once each.
    function _record(uint16 feed, QuorumOracle.FeedStatus memory s, uint32 maxAge) private {
        (uint32 seen, uint32 recovered) = _watch(feed);
        if (!_fresh(s, maxAge)) {
            // Round 0 is a feed never written: its first value needs no cool-down.
            if (s.roundId == 0 || seen == s.roundId) return;
            _setWatch(feed, s.roundId, 0);
            emit FeedTroubleSeen(feed, s.roundId);
        } else if (seen != 0 && recovered == 0 && s.roundId > seen) {
            uint32 time = _recoveryTime(feed, seen, s);
            _setWatch(feed, seen, time);
            emit FeedRecoverySeen(feed, seen, time);
        }
    }

    /// The observation time of the first value after round `seen` if the feed still holds it;
    /// else that of the latest value, which is later (the cool-down only lasts longer).
    function _recoveryTime(uint16 feed, uint32 seen, QuorumOracle.FeedStatus memory s) private view returns (uint32) {
        if (s.roundId == seen + 1) return s.observedAt;
        try oracle.roundData(feed, seen + 1) returns (int192, uint32 observedAt) {
            return observedAt;
        } catch {
            return s.observedAt;
        }
    }

    function _watch(uint16 feed) private view returns (uint32 round, uint32 recovered) {
        uint256 lane = s_watch[feed >> 2] >> ((uint256(feed) & 3) * 64);
        return (uint32(lane), uint32(lane >> 32));
    }

    function _setWatch(uint16 feed, uint32 round, uint32 recovered) private {
        uint256 shift = (uint256(feed) & 3) * 64;
        uint256 word = s_watch[feed >> 2];
        uint256 lane = (uint256(recovered) << 32) | round;
        s_watch[feed >> 2] = (word & ~(uint256(type(uint64).max) << shift)) | (lane << shift);
    }

    /// The price feed first, then RiskGate's inputs for the market (NO_FEED where unused).
    function _feeds(Market memory m, RiskGate.Inputs memory inputs) private pure returns (uint16[7] memory f) {
        f[0] = m.priceFeed;
        uint16[6] memory risk = inputFeeds(inputs);
        for (uint256 i; i < 6; ++i) f[i + 1] = risk[i];
    }

    /// Untripped and fresh: within the feed's heartbeat, the oracle not paused, and no older
    /// than the market's maxAge.
    function _fresh(QuorumOracle.FeedStatus memory s, uint32 maxAge) private view returns (bool) {
        return !s.tripped && !s.stale && block.timestamp <= uint256(s.observedAt) + maxAge;
    }

    function _requireUsablePrice(uint16 feed, QuorumOracle.FeedStatus memory s, uint32 maxAge) private view {
        if (s.tripped) revert FeedTripped(feed);
        if (!_fresh(s, maxAge)) revert FeedStale(feed, s.observedAt, maxAge);
        if (s.value <= 0) revert NonPositivePrice(feed, s.value);
    }

    function _value(int256 size, int256 price, Market memory m) private pure returns (int256) {
        return size * price / int256(10 ** m.valueExponent);
    }

    function _requirement(int256 value, uint256 bps) private pure returns (uint256) {
        return (_abs(value) * bps + BPS - 1) / BPS;
    }

    function _toInt128(int256 x) private pure returns (int128) {
        if (x > type(int128).max || x < type(int128).min) revert NotionalTooLarge(x);
        return int128(x);
    }

    /// |x|, also for type(int256).min.
    function _abs(int256 x) private pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-(x + 1)) + 1;
    }

    function _pull(uint256 amount) private {
        _call(abi.encodeCall(IERC20Minimal.transferFrom, (msg.sender, address(this), amount)), address(this), amount);
    }

    function _push(address to, uint256 amount) private {
        _call(abi.encodeCall(IERC20Minimal.transfer, (to, amount)), to, amount);
    }

    /// A token call that must succeed and return true or nothing; the token's own revert
    /// (e.g. an allowance error) is passed on as it is.
    function _call(bytes memory data, address to, uint256 amount) private {
        (bool ok, bytes memory ret) = address(collateralToken).call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        if (ret.length != 0 && !abi.decode(ret, (bool))) revert TransferFailed(to, amount);
    }
}
