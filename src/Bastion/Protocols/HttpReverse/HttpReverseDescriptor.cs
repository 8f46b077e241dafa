using Bastion.Cli;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.HttpReverse;

/// <summary>http-reverse: the reverse proxy on Kestrel and YARP.</summary>
public sealed class HttpReverseDescriptor : IListenerDescriptor
{
    public ListenerType Type => ListenerType.HttpReverse;
    public string Name => "http-reverse";
    public IReadOnlySet<string> Attributes { get; } = new HashSet<string>
        { "source", "user", "group", "host", "port", "method", "path", "url", "header", "content_type", "size", "time", "not", "upgrade" };

    public IReadOnlyList<OwnKey> OwnKeys { get; } =
        [new OwnKey("routes", l => !l.Routes.IsEmpty, "routes are for http-reverse listeners")];

    public void Validate(BastionConfig root, ListenerConfig l, Action<SourcePos, string> error)
    {
        if (l.Routes.IsEmpty) error(l.Pos, $"listener '{l.Name}': http-reverse needs at least one route");
        foreach (var r in l.Routes)
            if (!root.Upstreams.ContainsKey(r.Upstream) && !ConfigValidator.LooksLikeUrl(r.Upstream))
                error(r.Pos, $"route: unknown upstream '{r.Upstream}' (define it under 'upstreams:' or give a URL)");
        ReverseConfigCheck.Validate(l, error);
    }

    public bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error) =>
        ExplainText.TryHttp(request, listener, a, out error);

    public IGatewayListener Create(ListenerContext ctx) => new ReverseProxyListener(ctx);
}
