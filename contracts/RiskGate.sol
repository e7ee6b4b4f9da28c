// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Governed.sol";
import {QuorumOracle} from "./QuorumOracle.sol";

/// @title RiskGate
/// @notice Margins from attested data. Per market, governance sets a curve that maps an
/// attested volatility feed (bps) and an attested liquidity-depth feed (scaled units) to an
/// initial and a maintenance margin (bps), tighter as volatility rises or depth falls,
/// within a floor and a cap. Risk-increasing actions are refused while either input feed is
/// stale or tripped (or the oracle is paused); risk-reducing ones always pass.
///
/// The formula (integer, floor division; mirrored exactly by aggregation/margin.py):
///   volTerm   = vol * volMultiplierBps / 10000
///   depthTerm = depth >= depthRef ? 0 : depthPenaltyBps * (depthRef - depth) / depthRef
///   im        = min(max(baseImBps + volTerm + depthTerm, floorImBps), capImBps)
///   mm        = max(im * mmRatioBps / 10000, floorMmBps)
///
/// Governance is Owned's two-step owner. No guardian or pause of its own: a paused oracle
/// already makes every input stale here, which refuses risk-increasing actions.
contract RiskGate is Owned {
    struct Curve {
        uint32 baseImBps;
        uint32 volMultiplierBps;
        uint32 depthPenaltyBps;
        uint64 depthRef;
        uint32 floorImBps;
        uint32 capImBps;
        uint32 mmRatioBps;
        uint32 floorMmBps;
    }

    struct Market {
        uint16 volFeed;
        uint16 depthFeed;
        bool exists;
        Curve curve;
    }

    error InvalidCurve();
    error UnknownMarket(bytes32 marketId);
    error NegativeRiskInput(uint16 feedIndex, int256 value);
    error FeedStale(uint16 feedIndex);
    error FeedTripped(uint16 feedIndex);

    event CurveSet(bytes32 indexed marketId, uint16 volFeed, uint16 depthFeed, Curve curve);

    uint256 private constant BPS = 10_000;

    QuorumOracle public immutable oracle;
    mapping(bytes32 => Market) private s_markets;

    constructor(QuorumOracle oracle_) {
        oracle = oracle_;
    }

    /// Governance: sets (or replaces) a market's input feeds and curve.
    function setCurve(bytes32 marketId, uint16 volFeed, uint16 depthFeed, Curve calldata curve) external onlyOwner {
        validateCurve(curve);
        oracle.feedDecimals(volFeed); // reverts UnknownFeed
        oracle.feedDecimals(depthFeed);
        s_markets[marketId] = Market(volFeed, depthFeed, true, curve);
        emit CurveSet(marketId, volFeed, depthFeed, curve);
    }

    function market(bytes32 marketId) external view returns (Market memory) {
        return _market(marketId);
    }

    /// floor <= cap <= 100%, maintenance floor <= initial floor, ratio <= 100%, depthRef > 0:
    /// together these give 0 < mm <= im <= cap for every input.
    function validateCurve(Curve calldata c) public pure {
        if (
            c.depthRef == 0 || c.floorImBps == 0 || c.floorImBps > c.capImBps || c.capImBps > BPS
                || c.mmRatioBps > BPS || c.floorMmBps == 0 || c.floorMmBps > c.floorImBps
        ) revert InvalidCurve();
    }

    function computeMargins(Curve memory c, uint256 vol, uint256 depth)
        public
        pure
        returns (uint256 initialBps, uint256 maintenanceBps)
    {
        uint256 raw = c.baseImBps + vol * c.volMultiplierBps / BPS;
        if (depth < c.depthRef) raw += uint256(c.depthPenaltyBps) * (c.depthRef - depth) / c.depthRef;
        initialBps = raw < c.floorImBps ? c.floorImBps : raw;
        if (initialBps > c.capImBps) initialBps = c.capImBps;
        maintenanceBps = initialBps * c.mmRatioBps / BPS;
        if (maintenanceBps < c.floorMmBps) maintenanceBps = c.floorMmBps;
    }

    /// Margins from the latest attested values, and whether both inputs are usable
    /// (fresh and not tripped) for a risk-increasing action.
    function margins(bytes32 marketId) public view returns (uint256 initialBps, uint256 maintenanceBps, bool usable) {
        Market memory m = _market(marketId);
        QuorumOracle.FeedStatus memory vol = oracle.feedStatus(m.volFeed);
        QuorumOracle.FeedStatus memory depth = oracle.feedStatus(m.depthFeed);
        (initialBps, maintenanceBps) = computeMargins(m.curve, _nonNegative(m.volFeed, vol.value), _nonNegative(m.depthFeed, depth.value));
        usable = !(vol.stale || vol.tripped || depth.stale || depth.tripped);
    }

    /// The check a protocol calls before an action. Risk-increasing (open, increase, borrow,
    /// withdraw collateral): reverts FeedStale / FeedTripped unless both inputs are usable.
    /// Risk-reducing (close, repay, add collateral): always allowed; margins are informative.
    function checkAction(bytes32 marketId, bool increasesRisk)
        external
        view
        returns (uint256 initialBps, uint256 maintenanceBps)
    {
        Market memory m = _market(marketId);
        QuorumOracle.FeedStatus memory vol = oracle.feedStatus(m.volFeed);
        QuorumOracle.FeedStatus memory depth = oracle.feedStatus(m.depthFeed);
        if (increasesRisk) {
            if (vol.tripped) revert FeedTripped(m.volFeed);
            if (depth.tripped) revert FeedTripped(m.depthFeed);
            if (vol.stale) revert FeedStale(m.volFeed);
            if (depth.stale) revert FeedStale(m.depthFeed);
        }
        return computeMargins(m.curve, _nonNegative(m.volFeed, vol.value), _nonNegative(m.depthFeed, depth.value));
    }

    function _market(bytes32 marketId) private view returns (Market memory m) {
        m = s_markets[marketId];
        if (!m.exists) revert UnknownMarket(marketId);
    }

    function _nonNegative(uint16 feedIndex, int256 value) private pure returns (uint256) {
        if (value < 0) revert NegativeRiskInput(feedIndex, value);
        return uint256(value);
    }
}
