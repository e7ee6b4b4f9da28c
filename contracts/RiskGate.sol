// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Governed.sol";
import {QuorumOracle} from "./QuorumOracle.sol";

/// @title RiskGate
/// @notice Margins from attested data, in the units of the feeds it reads. Per market,
/// governance names the input feeds (realized volatility; optionally implied volatility,
/// order-book depth and cross-venue dispersion), a maximum data age, and a curve in plain
/// units: volatility as a fraction (1.0 = 100 %), depth in USD, dispersion in bps. Each feed's
/// decimals are read from the oracle at `setCurve` and stored with the market (an oracle
/// feed's decimals never change), so every read scales raw values without an extra call.
///
/// The formula (integer, floor division per term; mirrored exactly by aggregation/margin.py).
/// `x` is a raw feed value, `d` its decimals; negative inputs count as 0:
///   volTerm   = max(rv * volSlopeBps / 10^d_rv, iv * volSlopeBps / 10^d_iv)  (iv: 0 if unused)
///   dispTerm  = disp * dispersionMultiplierBps / (10000 * 10^d_disp)         (0 if unused)
///   ref       = depthRefUsd * 10^d_depth
///   depthTerm = depth >= ref ? 0 : depthPenaltyBps * (ref - depth) / ref     (0 if unused)
///   im        = min(max(baseImBps + volTerm + dispTerm + depthTerm, floorImBps), capImBps)
///   mm        = max(im * mmRatioBps / 10000, floorMmBps)
/// volSlopeBps is the initial margin (bps) added per 1.0 of annualized volatility (the higher
/// of realized and implied); dispersionMultiplierBps the margin added per bps of dispersion,
/// in bps (10000 = one for one).
///
/// Risk-reducing checks never revert on market inputs (negative, absurd, stale or tripped):
/// reducing risk always passes. Risk-increasing checks refuse, by name, when a feed the market
/// uses is tripped, stale (older than the market's maxAge or the feed's heartbeat, never
/// written, or the oracle paused) or negative; feeds other markets use play no part.
///
/// Governance is Owned's two-step owner. No guardian or pause of its own: a paused oracle
/// already makes every input stale here, which refuses risk-increasing actions.
contract RiskGate is Owned {
    /// A market's curve in plain units; bounds checked by validateCurve.
    struct Curve {
        uint32 baseImBps;
        uint32 volSlopeBps; // initial margin bps per 1.0 (100 %) of annualized volatility
        uint32 dispersionMultiplierBps; // initial margin bps per bps of dispersion, x 10000
        uint32 depthPenaltyBps; // added in full at zero depth, linearly less up to depthRefUsd
        uint64 depthRefUsd;
        uint32 floorImBps;
        uint32 capImBps;
        uint32 mmRatioBps; // maintenance as a share of initial
        uint32 floorMmBps;
    }

    /// What governance names per market: the feeds (NO_FEED: unused) and the data age limit.
    struct Inputs {
        uint16 realizedVolFeed;
        uint16 impliedVolFeed;
        uint16 depthFeed;
        uint16 dispersionFeed;
        uint32 maxAge;
    }

    struct Market {
        Inputs inputs;
        uint8 realizedVolDecimals;
        uint8 impliedVolDecimals;
        uint8 depthDecimals;
        uint8 dispersionDecimals;
        Curve curve;
    }

    /// One input as computeMargins takes it: the raw attested value, its feed's decimals, and
    /// whether the market uses it (realized volatility is always used; its flag is ignored).
    struct Reading {
        int256 value;
        uint8 decimals;
        bool used;
    }

    error UnknownMarket(bytes32 marketId);
    error CapAboveFull(uint32 capImBps);
    error ZeroFloor();
    error FloorAboveCap(uint32 floorImBps, uint32 capImBps);
    error MaintenanceAboveInitial(uint32 mmRatioBps, uint32 floorMmBps, uint32 floorImBps);
    error ZeroDepthRef();
    error ZeroMaxAge();
    error MissingVolatilityFeed();
    error UnsupportedDecimals(uint16 feedIndex, uint8 decimals);
    error NegativeRiskInput(uint16 feedIndex, int256 value);
    error FeedStale(uint16 feedIndex, uint32 observedAt, uint32 maxAge);
    error FeedTripped(uint16 feedIndex);

    event CurveSet(bytes32 indexed marketId, Market market);

    uint16 public constant NO_FEED = type(uint16).max;
    /// Feeds with more decimals are refused at setCurve (keeps every term far from overflow).
    uint8 public constant MAX_DECIMALS = 18;
    uint256 private constant BPS = 10_000;

    QuorumOracle public immutable oracle;
    mapping(bytes32 => Market) private s_markets;

    constructor(QuorumOracle oracle_) {
        oracle = oracle_;
    }

    /// Governance: sets (or replaces) a market's input feeds, data age limit and curve.
    /// Reverts UnknownFeed (from the oracle) for a feed it does not have.
    function setCurve(bytes32 marketId, Inputs calldata inputs, Curve calldata curve) external onlyOwner {
        validateCurve(curve);
        if (inputs.realizedVolFeed == NO_FEED) revert MissingVolatilityFeed();
        if (inputs.maxAge == 0) revert ZeroMaxAge();
        if (inputs.depthFeed != NO_FEED && curve.depthRefUsd == 0) revert ZeroDepthRef();
        Market memory m = Market(
            inputs,
            _decimals(inputs.realizedVolFeed),
            _decimals(inputs.impliedVolFeed),
            _decimals(inputs.depthFeed),
            _decimals(inputs.dispersionFeed),
            curve
        );
        s_markets[marketId] = m;
        emit CurveSet(marketId, m);
    }

    function market(bytes32 marketId) external view returns (Market memory) {
        return _market(marketId);
    }

    /// 0 < floorMm <= floorIm <= cap <= 100 % and mmRatio <= 100 %: together 0 < mm <= im <= cap.
    function validateCurve(Curve calldata c) public pure {
        if (c.capImBps > BPS) revert CapAboveFull(c.capImBps);
        if (c.floorImBps == 0 || c.floorMmBps == 0) revert ZeroFloor();
        if (c.floorImBps > c.capImBps) revert FloorAboveCap(c.floorImBps, c.capImBps);
        if (c.mmRatioBps > BPS || c.floorMmBps > c.floorImBps) {
            revert MaintenanceAboveInitial(c.mmRatioBps, c.floorMmBps, c.floorImBps);
        }
    }

    /// The curve on raw readings. Never reverts for int64 values (what the oracle stores) and
    /// decimals up to MAX_DECIMALS: negative values count as 0.
    function computeMargins(
        Curve memory c,
        Reading memory realizedVol,
        Reading memory impliedVol,
        Reading memory depth,
        Reading memory dispersion
    ) public pure returns (uint256 initialBps, uint256 maintenanceBps) {
        uint256 volTerm = _scaled(realizedVol, c.volSlopeBps, 1);
        if (impliedVol.used) {
            uint256 implied = _scaled(impliedVol, c.volSlopeBps, 1);
            if (implied > volTerm) volTerm = implied;
        }
        uint256 raw = c.baseImBps + volTerm;
        if (dispersion.used) raw += _scaled(dispersion, c.dispersionMultiplierBps, BPS);
        if (depth.used) {
            uint256 ref = uint256(c.depthRefUsd) * 10 ** depth.decimals;
            uint256 have = _nonNegative(depth.value);
            if (have < ref) raw += uint256(c.depthPenaltyBps) * (ref - have) / ref;
        }
        initialBps = raw < c.floorImBps ? c.floorImBps : raw;
        if (initialBps > c.capImBps) initialBps = c.capImBps;
        maintenanceBps = initialBps * c.mmRatioBps / BPS;
        if (maintenanceBps < c.floorMmBps) maintenanceBps = c.floorMmBps;
    }

    /// Margins from the latest attested values, and whether every input the market uses is
    /// fit for a risk-increasing action (fresh, untripped, non-negative). Never reverts on
    /// market inputs; only for an unknown market.
    function margins(bytes32 marketId) public view returns (uint256 initialBps, uint256 maintenanceBps, bool usable) {
        Market memory m = _market(marketId);
        (Reading[4] memory r, uint256 refusal,) = _read(m);
        (initialBps, maintenanceBps) = computeMargins(m.curve, r[0], r[1], r[2], r[3]);
        usable = refusal == 0;
    }

    /// The check a protocol calls before an action. Risk-increasing (open, increase, borrow,
    /// withdraw collateral): reverts FeedTripped, else FeedStale, else NegativeRiskInput, naming
    /// the first such input in the order realized vol, implied vol, depth, dispersion. Risk-reducing (close, repay, add collateral): always returns the margins.
    function checkAction(bytes32 marketId, bool increasesRisk)
        external
        view
        returns (uint256 initialBps, uint256 maintenanceBps)
    {
        Market memory m = _market(marketId);
        (Reading[4] memory r, uint256 refusal, uint16 feed) = _read(m);
        if (increasesRisk && refusal != 0) {
            if (refusal == 1) revert FeedTripped(feed);
            if (refusal == 2) revert FeedStale(feed, oracle.feedStatus(feed).observedAt, m.inputs.maxAge);
            revert NegativeRiskInput(feed, r[_slot(m.inputs, feed)].value);
        }
        return computeMargins(m.curve, r[0], r[1], r[2], r[3]);
    }

    function _market(bytes32 marketId) private view returns (Market memory m) {
        m = s_markets[marketId];
        if (m.inputs.maxAge == 0) revert UnknownMarket(marketId);
    }

    function _decimals(uint16 feed) private view returns (uint8 d) {
        if (feed == NO_FEED) return 0;
        d = oracle.feedDecimals(feed);
        if (d > MAX_DECIMALS) revert UnsupportedDecimals(feed, d);
    }

    /// The market's readings (realized vol, implied vol, depth, dispersion) and the first
    /// reason, in that order, a risk-increasing action would be refused: 0 none, 1 tripped,
    /// 2 stale, 3 negative; `feed` names the input.
    function _read(Market memory m) private view returns (Reading[4] memory r, uint256 refusal, uint16 feed) {
        uint16[4] memory feeds =
            [m.inputs.realizedVolFeed, m.inputs.impliedVolFeed, m.inputs.depthFeed, m.inputs.dispersionFeed];
        uint8[4] memory decimals = [m.realizedVolDecimals, m.impliedVolDecimals, m.depthDecimals, m.dispersionDecimals];
        for (uint256 i; i < 4; ++i) {
            if (feeds[i] == NO_FEED) continue;
            QuorumOracle.FeedStatus memory s = oracle.feedStatus(feeds[i]);
            r[i] = Reading(s.value, decimals[i], true);
            uint256 why;
            if (s.tripped) why = 1;
            else if (s.stale || block.timestamp > uint256(s.observedAt) + m.inputs.maxAge) why = 2;
            else if (s.value < 0) why = 3;
            if (why != 0 && (refusal == 0 || why < refusal)) (refusal, feed) = (why, feeds[i]);
        }
    }

    function _slot(Inputs memory inputs, uint16 feed) private pure returns (uint256) {
        if (feed == inputs.realizedVolFeed) return 0;
        if (feed == inputs.impliedVolFeed) return 1;
        if (feed == inputs.depthFeed) return 2;
        return 3;
    }

    /// max(value, 0) * factor / (divisor * 10^decimals), floor.
    function _scaled(Reading memory r, uint256 factor, uint256 divisor) private pure returns (uint256) {
        return _nonNegative(r.value) * factor / (divisor * 10 ** r.decimals);
    }

    function _nonNegative(int256 value) private pure returns (uint256) {
        return value < 0 ? 0 : uint256(value);
    }
}
