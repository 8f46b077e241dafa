using Bastion.Hosting;

namespace Bastion.Http.Forward;

/// <summary>The forward proxy (SPEC 3, http-proxy).</summary>
public sealed class HttpProxyListener(ListenerContext ctx) : StreamListener(ctx)
{
    protected override Task HandleAsync(ClientConnection conn) => Task.CompletedTask;
}
