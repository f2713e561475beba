//! Stage 2, observe: the request as QuickSight lists it, through the listing cache — read fresh
//! when an intent of this action and generation is pending, since a cached listing may predate
//! its call.

use super::admit::Admitted;
use super::plan::{Asked, Observed};
use crate::context::Context;
use crate::decide::intent_for;

pub async fn observe(ctx: &Context, admitted: &Admitted, asked: &Asked<'_>, id: &str) -> Observed {
    let scope = &admitted.scope;
    if intent_for(asked.previous, asked.action, asked.generation).is_some() {
        ctx.directory.find_fresh(scope, id).await
    } else {
        ctx.directory.find(scope, id).await
    }
}
