using Bastion.Gateway;
using Bastion.Hosting;

namespace Bastion.Protocols.Socks5;

/// <summary>
/// The SOCKS gateway (SPEC 3, socks5): RFC 1928 CONNECT and UDP ASSOCIATE, RFC 1929 username/password, and
/// SOCKS4/4a when `socks4: true`. Every target is put to the policy (source, user, host, port) before anything
/// is resolved or connected, so a denied name is never looked up. One <see cref="Socks5Session"/> per connection.
/// </summary>
public sealed class Socks5Listener(ListenerContext ctx) : StreamListener(ctx)
{
    protected override Task HandleAsync(ClientConnection conn) => new Socks5Session(Ctx, conn).RunAsync();
}
