using Bastion.Gateway;
using Bastion.Policy;
using Bastion.Policy.Canonical;
using Microsoft.AspNetCore.Http;

namespace Bastion.Protocols.HttpReverse;

/// <summary>What one request carries through the pipeline and the transformer.</summary>
sealed class RequestState
{
    /// <summary>The request's record: its access-log line and metrics.</summary>
    public required Exchange X;
    public string Id => X.Id;
    public required ReverseState State;
    public readonly RequestAttributes Attrs = new();
    /// <summary>The request target in its one canonical form: what is judged, routed and forwarded.</summary>
    public readonly CanonicalTarget Canonical = new();
    /// <summary>The protocols the request asks to upgrade to, lower-case (null: none).</summary>
    public string[]? Upgrade;
    /// <summary>The 101 was relayed and its decision line written: the line at the end is the tunnel's transfer line.</summary>
    public bool TunnelOpen;
    public ClientConnection? Conn;
    public CompiledRoute? Route;
    public UpstreamTarget? Target;
    public Decision Decision;
    public Decision? ResponseDenied;
    /// <summary>The upstream's response could not be relayed (ambiguous framing, unrequested 101): answered 502.</summary>
    public string? ResponseRefused;
    public bool StripAuthorization;
    public long BytesIn, BytesOut;
    public CountingStream? InCounter, OutCounter;
}

/// <summary>Request headers as the policy engine sees them, without copying.</summary>
sealed class HeaderSource(IHeaderDictionary headers) : IHeaderSource
{
    public string? Get(string name) =>
        headers.TryGetValue(name, out var v) && v.Count > 0 ? (v.Count == 1 ? v[0] : string.Join(", ", v.ToArray())) : null;

    public bool TryGetLine(string name, int index, out string value)
    {
        value = headers.TryGetValue(name, out var v) && index < v.Count ? v[index] ?? "" : "";
        return index < v.Count;
    }
}
