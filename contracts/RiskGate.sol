// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Governed.sol";
import {QuorumOracle} from "./QuorumOracle.sol";

/// @title RiskGate
/// @notice Margins from attested data, in the units of the feeds it reads. Per market,
/// governance names the input feeds (realized volatility; optionally implied volatility,
/// order-book depth, cross-venue dispersion, funding rate and open interest), a maximum data
/// age, and a curve in plain units: volatility and funding as fractions (1.0 = 100 %), depth
/// and open interest in USD, dispersion in bps. Each feed's
/// decimals are read from the oracle at `setCurve` and stored with the market (an oracle
/// feed's decimals never change), so every read scales raw values without an extra call.
///
/// The formula (integer, floor division per term; mirrored exactly by aggregation/margin.py).
/// `x` is a raw feed value, `d` its decimals; negative inputs count as 0:
///   volTerm   = max(rv * volSlopeBps / 10^d_rv, iv * volSlopeBps / 10^d_iv)  (iv: 0 if unused)
///   dispTerm  = disp * dispersionMultiplierBps / (10000 * 10^d_disp)         (0 if unused)
///   ref       = depthRefUsd * 10^d_depth
///   depthTerm = depth >= ref ? 0 : depthPenaltyBps * (ref - depth) / ref     (0 if unused)
///   over      = max(|fund| * 10^6 - fundingThresholdPpm * 10^d_fund, 0)
///   fundTerm  = over * fundingSlopeBps / 10^(d_fund + 6)                     (0 if unused)
///   oiRef     = openInterestRefUsd * 10^d_oi
///   oiTerm    = oi > oiRef > 0 ? openInterestSlopeBps * (oi - oiRef) / oiRef : 0  (0 if unused)
///   im        = min(max(baseImBps + volTerm + dispTerm + depthTerm + fundTerm + oiTerm,
///                       floorImBps), capImBps)
///   mm        = max(im * mmRatioBps / 10000, floorMmBps)
/// volSlopeBps is the initial margin (bps) added per 1.0 of annualized volatility (the higher
/// of realized and implied); dispersionMultiplierBps the margin added per bps of dispersion,
/// in bps (10000 = one for one).
///
/// Funding and open interest measure crowding, not price risk. A funding rate far from zero
/// in either direction says one side of the market is crowded and pays to stay so; a squeeze
/// of that side is the liquidation cascade margin guards against, so the rate counts by its
/// absolute value, and only beyond `fundingThresholdPpm` (millionths of 1.0 per funding period
/// of the feed, e.g. 100 = 0.01 % per 8 h, the usual resting rate, which says nothing), then
/// linearly: `fundingSlopeBps` of margin per 1.0 of rate beyond the threshold. Open interest
/// adds margin only beyond what governance judges the market absorbs, `openInterestRefUsd`,
/// linearly in the excess as a share of that reference: `openInterestSlopeBps` per 100 % over
/// it (twice the reference adds the slope once). Both terms are unbounded on their own and
/// bounded by the cap, as every term is. A negative funding rate is a real market state, so it
/// never refuses new risk; a negative open interest counts as 0 and refuses new risk like any
/// other negative input.
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
        uint32 fundingSlopeBps; // initial margin bps per 1.0 of |funding rate| beyond the threshold
        uint32 fundingThresholdPpm; // |funding rate| that adds nothing, millionths of 1.0 per period
        uint32 openInterestSlopeBps; // initial margin bps per 100 % of open interest beyond the reference
        uint64 openInterestRefUsd; // open interest the market absorbs without extra margin
    }

    /// What governance names per market: the feeds (NO_FEED: unused) and the data age limit.
    struct Inputs {
        uint16 realizedVolFeed;
        uint16 impliedVolFeed;
        uint16 depthFeed;
        uint16 dispersionFeed;
        uint16 fundingFeed;
        uint16 openInterestFeed;
        uint32 maxAge;
    }

    struct Market {
        Inputs inputs;
        uint8 realizedVolDecimals;
        uint8 impliedVolDecimals;
        uint8 depthDecimals;
        uint8 dispersionDecimals;
        uint8 fundingDecimals;
        uint8 openInterestDecimals;
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
    error ZeroOpenInterestRef();
    error FundingThresholdAboveFull(uint32 fundingThresholdPpm);
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
    uint256 private constant PPM = 1_000_000;
    /// Readings in computeMargins' order; FUNDING is the one input that may be negative.
    uint256 private constant INPUTS = 6;
    uint256 private constant FUNDING = 4;
    uint256 private constant OPEN_INTEREST = 5;

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
        if (inputs.openInterestFeed != NO_FEED && curve.openInterestRefUsd == 0) revert ZeroOpenInterestRef();
        Market memory m = Market(
            inputs,
            _decimals(inputs.realizedVolFeed),
            _decimals(inputs.impliedVolFeed),
            _decimals(inputs.depthFeed),
            _decimals(inputs.dispersionFeed),
            _decimals(inputs.fundingFeed),
            _decimals(inputs.openInterestFeed),
            curve
        );
        s_markets[marketId] = m;
        emit CurveSet(marketId, m);
    }

    function market(bytes32 marketId) external view returns (Market memory) {
        return _market(marketId);
    }

    /// The market's feeds and data age limit alone: what a consumer checking freshness itself
    /// (MarginVault) needs, without decoding the whole market. Reverts UnknownMarket.
    function marketInputs(bytes32 marketId) external view returns (Inputs memory i) {
        i = s_markets[marketId].inputs;
        if (i.maxAge == 0) revert UnknownMarket(marketId);
    }

    /// 0 < floorMm <= floorIm <= cap <= 100 % and mmRatio <= 100 %: together 0 < mm <= im <= cap;
    /// a funding threshold of at most 1.0 (a rate beyond it is no market's).
    function validateCurve(Curve calldata c) public pure {
        if (c.capImBps > BPS) revert CapAboveFull(c.capImBps);
        if (c.floorImBps == 0 || c.floorMmBps == 0) revert ZeroFloor();
        if (c.floorImBps > c.capImBps) revert FloorAboveCap(c.floorImBps, c.capImBps);
        if (c.mmRatioBps > BPS || c.floorMmBps > c.floorImBps) {
            revert MaintenanceAboveInitial(c.mmRatioBps, c.floorMmBps, c.floorImBps);
        }
        if (c.fundingThresholdPpm > PPM) revert FundingThresholdAboveFull(c.fundingThresholdPpm);
    }

    /// The curve on raw readings, in the order realized vol, implied vol, depth, dispersion,
    /// funding rate, open interest (`used` false: the market does not use it; realized
    /// volatility is always used). Never reverts for int64 values (what the oracle stores) and
    /// decimals up to MAX_DECIMALS: negative values count as 0, a negative funding rate by its
    /// absolute value.
    function computeMargins(Curve memory c, Reading[6] memory r)
        public
        pure
        returns (uint256 initialBps, uint256 maintenanceBps)
    {
        uint256 volTerm = _scaled(r[0], c.volSlopeBps, 1);
        if (r[1].used) {
            uint256 implied = _scaled(r[1], c.volSlopeBps, 1);
            if (implied > volTerm) volTerm = implied;
        }
        uint256 raw = c.baseImBps + volTerm;
        if (r[3].used) raw += _scaled(r[3], c.dispersionMultiplierBps, BPS);
        if (r[2].used) {
            uint256 ref = uint256(c.depthRefUsd) * 10 ** r[2].decimals;
            uint256 have = _nonNegative(r[2].value);
            if (have < ref) raw += uint256(c.depthPenaltyBps) * (ref - have) / ref;
        }
        if (r[FUNDING].used) {
            Reading memory f = r[FUNDING];
            uint256 rate = _abs(f.value) * PPM;
            uint256 threshold = uint256(c.fundingThresholdPpm) * 10 ** f.decimals;
            if (rate > threshold) raw += (rate - threshold) * c.fundingSlopeBps / (PPM * 10 ** f.decimals);
        }
        if (r[OPEN_INTEREST].used) {
            uint256 ref = uint256(c.openInterestRefUsd) * 10 ** r[OPEN_INTEREST].decimals;
            uint256 have = _nonNegative(r[OPEN_INTEREST].value);
            if (ref != 0 && have > ref) raw += uint256(c.openInterestSlopeBps) * (have - ref) / ref;
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
        (Reading[6] memory r, uint256 refusal,) = _read(m);
        (initialBps, maintenanceBps) = computeMargins(m.curve, r);
        usable = refusal == 0;
    }

    /// The check a protocol calls before an action. Risk-increasing (open, increase, borrow,
    /// withdraw collateral): reverts FeedTripped, else FeedStale, else NegativeRiskInput (never
    /// for the funding rate), naming the first such input in the order realized vol, implied
    /// vol, depth, dispersion, funding rate, open interest. Risk-reducing (close, repay, add
    /// collateral): always returns the margins.
    function checkAction(bytes32 marketId, bool increasesRisk)
        external
        view
        returns (uint256 initialBps, uint256 maintenanceBps)
    {
        Market memory m = _market(marketId);
        (Reading[6] memory r, uint256 refusal, uint16 feed) = _read(m);
        if (increasesRisk && refusal != 0) {
            if (refusal == 1) revert FeedTripped(feed);
            if (refusal == 2) revert FeedStale(feed, oracle.feedStatus(feed).observedAt, m.inputs.maxAge);
            revert NegativeRiskInput(feed, r[_slot(m.inputs, feed)].value);
        }
        return computeMargins(m.curve, r);
    }

    function _market(bytes32 marketId) private view returns (Market memory m) {
        // Copied part by part: one statement for the whole struct leaves the optimizer loading
        // every field from storage on its own (26 loads instead of 4, about 5k gas per read).
        Market storage stored = s_markets[marketId];
        m.inputs = stored.inputs;
        if (m.inputs.maxAge == 0) revert UnknownMarket(marketId);
        m.realizedVolDecimals = stored.realizedVolDecimals;
        m.impliedVolDecimals = stored.impliedVolDecimals;
        m.depthDecimals = stored.depthDecimals;
        m.dispersionDecimals = stored.dispersionDecimals;
        m.fundingDecimals = stored.fundingDecimals;
        m.openInterestDecimals = stored.openInterestDecimals;
        m.curve = stored.curve;
    }

    function _decimals(uint16 feed) private view returns (uint8 d) {
        if (feed == NO_FEED) return 0;
        d = oracle.feedDecimals(feed);
        if (d > MAX_DECIMALS) revert UnsupportedDecimals(feed, d);
    }

    /// The market's readings and the first reason, in computeMargins' order, a risk-increasing
    /// action would be refused: 0 none, 1 tripped, 2 stale, 3 negative (but a funding rate);
    /// `feed` names the input.
    function _read(Market memory m) private view returns (Reading[6] memory r, uint256 refusal, uint16 feed) {
        uint16[6] memory feeds = inputFeeds(m.inputs);
        uint8[6] memory decimals = [
            m.realizedVolDecimals,
            m.impliedVolDecimals,
            m.depthDecimals,
            m.dispersionDecimals,
            m.fundingDecimals,
            m.openInterestDecimals
        ];
        for (uint256 i; i < INPUTS; ++i) {
            if (feeds[i] == NO_FEED) continue;
            QuorumOracle.FeedStatus memory s = oracle.feedStatus(feeds[i]);
            r[i] = Reading(s.value, decimals[i], true);
            uint256 why;
            if (s.tripped) why = 1;
            else if (s.stale || block.timestamp > uint256(s.observedAt) + m.inputs.maxAge) why = 2;
            else if (s.value < 0 && i != FUNDING) why = 3;
            if (why != 0 && (refusal == 0 || why < refusal)) (refusal, feed) = (why, feeds[i]);
        }
    }

    function _slot(Inputs memory inputs, uint16 feed) private pure returns (uint256 i) {
        uint16[6] memory feeds = inputFeeds(inputs);
        while (feeds[i] != feed) ++i;
    }

    /// max(value, 0) * factor / (divisor * 10^decimals), floor.
    function _scaled(Reading memory r, uint256 factor, uint256 divisor) private pure returns (uint256) {
        return _nonNegative(r.value) * factor / (divisor * 10 ** r.decimals);
    }

    function _nonNegative(int256 value) private pure returns (uint256) {
        return value < 0 ? 0 : uint256(value);
    }

    /// |x|, also for type(int256).min.
    function _abs(int256 x) private pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-(x + 1)) + 1;
    }
}

/// A market's input feeds in computeMargins' order (NO_FEED where unused).
function inputFeeds(RiskGate.Inputs memory i) pure returns (uint16[6] memory) {
    return [i.realizedVolFeed, i.impliedVolFeed, i.depthFeed, i.dispersionFeed, i.fundingFeed, i.openInterestFeed];
}
